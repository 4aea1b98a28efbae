"""Classification losses for noisy labels.

Every loss subclasses `keras.losses.Loss`, returns one value per example from
`call()`, accepts integer or one-hot labels, and is registered for
serialisation under the package name "tfrobust".
"""

from tfrobust.losses.absgd import ABSGD
from tfrobust.losses.absgd import ABSGDSchedule
from tfrobust.losses.active_passive import NCEandRCE
from tfrobust.losses.active_passive import NormalizedCrossEntropy
from tfrobust.losses.active_passive import ReverseCrossEntropy
from tfrobust.losses.bare import BatchReweighting
from tfrobust.losses.bitempered import BiTemperedLogisticLoss
from tfrobust.losses.bootstrap import BootstrapHard
from tfrobust.losses.bootstrap import BootstrapSoft
from tfrobust.losses.correction import BackwardCorrection
from tfrobust.losses.correction import ForwardCorrection
from tfrobust.losses.focal import FocalLoss
from tfrobust.losses.gce import GeneralizedCrossEntropy
from tfrobust.losses.ldam import DeferredReweighting
from tfrobust.losses.ldam import LDAMLoss
from tfrobust.losses.mae import MeanAbsoluteError
from tfrobust.losses.mentornet import MentorNetPD
from tfrobust.losses.mentornet import MentorNetSchedule
from tfrobust.losses.mentornet_dd import MentorDataRecorder
from tfrobust.losses.mentornet_dd import MentorNet
from tfrobust.losses.mentornet_dd import MentorNetDD
from tfrobust.losses.mentornet_dd import mentor_training_data
from tfrobust.losses.mentornet_dd import train_mentor
from tfrobust.losses.poly import Poly1CrossEntropy
from tfrobust.losses.sce import SymmetricCrossEntropy
from tfrobust.losses.taylor import TaylorLoss
from tfrobust.losses.taylor_ce import TaylorCrossEntropy
from tfrobust.losses.uninformed import uninformed_prediction

__all__ = [
    "ABSGD",
    "ABSGDSchedule",
    "BackwardCorrection",
    "BatchReweighting",
    "BiTemperedLogisticLoss",
    "BootstrapHard",
    "BootstrapSoft",
    "FocalLoss",
    "DeferredReweighting",
    "ForwardCorrection",
    "GeneralizedCrossEntropy",
    "LDAMLoss",
    "MeanAbsoluteError",
    "MentorDataRecorder",
    "MentorNet",
    "MentorNetDD",
    "MentorNetPD",
    "MentorNetSchedule",
    "NCEandRCE",
    "NormalizedCrossEntropy",
    "Poly1CrossEntropy",
    "ReverseCrossEntropy",
    "SymmetricCrossEntropy",
    "TaylorCrossEntropy",
    "uninformed_prediction",
    "TaylorLoss",
    "mentor_training_data",
    "train_mentor",
]
