"""Training methods that learn example weights from a small clean meta set.

Each method is a `keras.Model` that wraps the user's classifier and overrides
`train_step` (TensorFlow backend), so `compile` / `fit` / callbacks /
`History` / `tf.distribute` work as usual and the classifier is trained in
place:

    meta, data = datasets.load("mnist5k", noise="symmetric:0.4").meta_split(per_class=10, seed=0)
    trainer = reweighting.MetaWeightNet(model, meta_data=meta)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    trainer.fit(data.train_dataset(100), epochs=40)

  L2RW           Ren et al., ICML 2018: weights from the meta-gradient at eps = 0.
  MetaWeightNet  Shu et al., NeurIPS 2019: a 1-100-1 MLP maps loss to weight,
                 learned by a one-step look-ahead on the meta batch.
  WarPI          Sun et al., Pattern Recognition 2022: a probabilistic meta-net
                 rescales each example's logits (same bilevel loop, nested tapes).
  AdvisorNetwork Ricci et al., ICIAP 2021: an advisor re-weights the features the
                 head sees, per example (same bilevel loop, nested tapes).
  MAML           Finn et al., ICML 2017: meta-learning on few-shot episodes
                 (tfrobust.episodes), second order by default.
  NestedMAML     Killamsetty et al., AAAI 2022: MAML whose training tasks carry
                 weights learned on clean validation tasks.
  FORML          Yan et al., arXiv 2022: L2RW's weights against a fairness
                 objective (worst-group loss) of a group-labelled meta set.
"""

from tfrobust.reweighting.advisor import AdvisorNetwork
from tfrobust.reweighting.advisor import build_advisor_net
from tfrobust.reweighting.forml import FORML
from tfrobust.reweighting.l2rw import L2RW
from tfrobust.reweighting.maml import MAML
from tfrobust.reweighting.meta_weight_net import MetaWeightNet
from tfrobust.reweighting.meta_weight_net import build_meta_net
from tfrobust.reweighting.nested_maml import NestedMAML
from tfrobust.reweighting.warpi import WarPI
from tfrobust.reweighting.warpi import build_rectifier_net

__all__ = ["FORML", "L2RW", "MAML", "AdvisorNetwork", "MetaWeightNet", "NestedMAML", "WarPI", "build_advisor_net",
           "build_meta_net", "build_rectifier_net"]
