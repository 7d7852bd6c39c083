"""Makes `import lightring` work from the source tree: python/ on sys.path; the
extension is found by lightring/_ext.py (build*/csrc/, or $LIGHTRING_BUILD_DIR)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, HERE)
