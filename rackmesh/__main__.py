from rackmesh.cli import main

main()
