"""`python -m chalklm` (and `torchrun -m chalklm`) runs the command line."""

from chalklm.cli import main

if __name__ == "__main__":
    main()
