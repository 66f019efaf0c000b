"""``python -m pni`` (also what ``torchrun -m pni`` runs)."""
import sys

from .cli import main

sys.exit(main())
