"""Looking inside the encoder: the IDR of degraded images (the paper's Fig. 6), how well it separates degradations,
and a small regression head that reads blur, noise and JPEG quality off it (``kdsr idr``, ``kdsr estimate``).

scikit-learn and matplotlib (the ``analysis`` extra) are needed to fit and plot, never to predict.
"""
