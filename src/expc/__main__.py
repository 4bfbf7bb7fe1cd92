from expc.cli import main

main()
