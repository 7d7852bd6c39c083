"""Pretraining example: `mpirun -np 4 python3 examples/pretrain.py --dp 2 --sp 2 --data fortunes`
(the flags of lightring-train; docs/training.md "Python driver"). The same as python -m lightring.train."""
import sys

from lightring.train import main

sys.exit(main())
