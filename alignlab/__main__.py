from alignlab.runs.cli import main

main()
