"""Reading the degradation off an IDR, and steering it, without torch: the estimator's file format and read-out
(:mod:`~kdsr.readout.head`), the IDR map and the dials built on it (:mod:`~kdsr.readout.steering`). Inference uses
them to steer and report; :mod:`kdsr.insight` fits them (with torch and scikit-learn)."""
