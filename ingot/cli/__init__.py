"""The `ingot` command line: thin argparse wrappers over functions in the core package."""
