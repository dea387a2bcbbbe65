"""AnatPasteReview's logic, importable without 3D Slicer's GUI.

- ``client``, ``multipart``: the server's HTTP API (standard library only);
- ``images``: the maps NRRD in, a 16-bit PNG out (numpy only);
- ``tasks``, ``signal``: background calls and notifications (standard library only);
- ``workflow``: what is enabled when (pure rules);
- ``session``: one reviewer's session with the server (no Qt, no MRML);
- ``scene``: MRML only (volumes, heatmap overlay, lung segmentation).
"""
