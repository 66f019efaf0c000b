"""Certified robustness by randomized smoothing (Cohen, Rosenfeld, Kolter 2019): PREDICT and
CERTIFY (``smoothing``), each image's i.i.d. noisy samples for a PNI model (``sampling``), and
the certificates checked against L2 attacks (``check``)."""
from .check import CertificateCheck, certify_and_check, cross_check_certificates
from .smoothing import (Certification, CertifyError, SmoothedPrediction, certify, certify_checkpoint,
                        gaussian_augment, predict, rse_inject)

__all__ = ["CertificateCheck", "Certification", "CertifyError", "SmoothedPrediction", "certify",
           "certify_and_check", "certify_checkpoint", "cross_check_certificates", "gaussian_augment", "predict",
           "rse_inject"]
