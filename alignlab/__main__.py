from alignlab.cli import main

main()
