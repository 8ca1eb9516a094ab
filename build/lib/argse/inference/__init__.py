"""Classifying new images with a trained team, with the option to abstain (docs/predict.md)::

from argse import inference
team = inference.load("outputs/demo", rate=0.2, method="plugin_worst")   # a run folder or its config file
rows = team.predict(images)   # PIL images, or uint8 [N, 3, H, W] / float [0, 1] tensors
rows[0]["class"], rows[0]["decision"]                                      # 'class_3', 'accepted'
"""

from argse.inference.team import Predictor, load

__all__ = ["Predictor", "load"]
