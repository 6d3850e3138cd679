"""`python -m udass ...` (also what `torchrun -m udass train` starts)."""
from udass.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
