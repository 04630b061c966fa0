"""What you do with a trained model: score it (``evaluate``), fill in your own photos
(``reconstruct``), train the seam refiner (``refine``), probe the frozen encoder (``probe``, with
``probe_settings``, ``probe_data``, ``readouts``, ``labels``, ``feature_space``). Published
weights load through :mod:`mae_utils.pretrained`."""
