"""What you do with a trained model: score it (``evaluate``), fill in your own photos
(``reconstruct``), start from published weights (``pretrained``)."""
