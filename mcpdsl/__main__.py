"""`python -m mcpdsl`."""

from mcpdsl.cli import run

if __name__ == "__main__":
    run()
