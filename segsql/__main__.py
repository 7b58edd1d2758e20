from segsql.cli import main

main()
