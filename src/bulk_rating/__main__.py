from bulk_rating.cli import main

main()
