"""The AnatPaste MONAI Label app's parts; ``main.py`` wires them into MONAI Label."""
