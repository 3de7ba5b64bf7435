from edge_signs.cli import main

main()
