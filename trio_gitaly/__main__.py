from trio_gitaly.cli import main

main()
