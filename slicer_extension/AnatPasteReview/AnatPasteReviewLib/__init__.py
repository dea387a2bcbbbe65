"""AnatPasteReview's logic, importable without 3D Slicer's GUI.

- ``client``, ``answers``, ``errors``, ``multipart``: the server's HTTP API (requests, email);
- ``images``: the maps NRRD in (SimpleITK), a 16-bit PNG out (Pillow);
- ``tasks``, ``signal``: background calls and notifications (standard library only);
- ``workflow``: what is enabled when (pure rules);
- ``session``: one reviewer's session with the server (no Qt, no MRML);
- ``scene``: MRML only (volumes, heatmap overlay, lung segmentation);
- ``logic``: the module's Logic, session + scene, with Slicer's file reader and layout injected.
"""
