"""The AnatPaste MONAI Label app (this folder is what ``monailabel start_server --app`` is given).

MONAI Label loads ``main.py`` from the folder; the app's code is the package :mod:`monailabel_app.lib`, imported
under that one name by ``main.py``, MONAI Label's task subprocesses, spawned training workers and the tests
(the project's ``pip install -e .`` makes it importable from any folder).
"""
