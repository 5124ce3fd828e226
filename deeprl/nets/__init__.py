"""Network building blocks shared by agents: MLP torsos, normalizers, action distributions."""
