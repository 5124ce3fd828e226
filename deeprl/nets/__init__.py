"""Network building blocks shared by agents and world models: MLP and CNN torsos, value heads,
normalizers, action distributions (:mod:`.distributions`), stateless tensor math such as symlog and
Polyak averaging (:mod:`.functional`) and hyperparameter schedules (:mod:`.schedules`)."""
