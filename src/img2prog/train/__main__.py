"""``python -m img2prog.train native ...`` (what ``torchrun -m img2prog.train`` runs)."""

from img2prog.train.cli import app

if __name__ == "__main__":
    app(prog_name="img2prog train")
