from deeprl.train.cli import main

main()
