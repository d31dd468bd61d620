"""Knowledge distillation: a from-scratch ResNet34 learns from an ImageNet-pretrained teacher.

Offline, a ResNet34 can only be trained from scratch, and on 5,000 photos from a
few sources it learns those sources (framing, sharpness, lighting) as much as
masks. A MobileNetV2 fine-tuned from ImageNet weights knows faces and objects
in general; its softened probabilities (Hinton et al., 2015, "Distilling the
knowledge in a neural network") carry that knowledge to the student: how
mask-like a face is, not only which label it has.

The teacher sees the same augmented batch as the student, so both judge the
same pixels; or, with ``clean`` (``--distill-clean``), the same crops without the
training-only conditions (``augment.KeepCleanView``), so it is taught to read a
stressed face as the teacher reads it clean. The callback changes only the training loss: validation
metrics, the exported learner and its loss function are plain cross-entropy,
and no teacher is pickled into ``export.pkl``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fastai.callback.core import Callback

__all__ = ["KnowledgeDistillation", "distillation_loss"]

DEFAULT_TEMPERATURE = 4.0
DEFAULT_ALPHA = 0.7


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                      temperature: float = DEFAULT_TEMPERATURE, alpha: float = DEFAULT_ALPHA,
                      only_right: bool = False) -> torch.Tensor:
    """(1 - alpha) * cross-entropy(target) + alpha * T² * KL(teacher_T || student_T), averaged over the batch.

    T² keeps the soft term's gradients on the same scale whatever the
    temperature (Hinton et al.); alpha = 0 is plain cross-entropy.

    ``only_right``: the soft term only on items the teacher labels right; an item it gets wrong is
    learnt from its label alone (cross-entropy at full weight). A model distilled from itself
    otherwise keeps its own mistakes: retrained with a hand drawn over unmasked mouths, the shipped
    model, as its own teacher, kept saying the hand looked like a mask (docs/accuracy.md).
    """
    if alpha == 0:
        return F.cross_entropy(student_logits, target)
    t = temperature
    hard = F.cross_entropy(student_logits, target, reduction="none")
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="none", log_target=True).sum(1) * (t * t)
    mixed = (1 - alpha) * hard + alpha * soft
    if only_right:
        mixed = torch.where(teacher_logits.argmax(1) == target, mixed, hard)
    return mixed.mean()


class KnowledgeDistillation(Callback):
    """Replaces the training loss by :func:`distillation_loss` against ``teacher`` (a model in eval mode).

    Only training batches are changed; validation loss and metrics stay plain
    cross-entropy, so runs with and without a teacher compare directly.
    """

    order = 60  # after the model's forward, before the backward pass

    def __init__(self, teacher: torch.nn.Module, temperature: float = DEFAULT_TEMPERATURE,
                 alpha: float = DEFAULT_ALPHA, only_right: bool = False) -> None:
        self.teacher, self.temperature, self.alpha = teacher.eval(), temperature, alpha
        self.only_right = only_right
        self._clean: torch.Tensor | None = None
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def before_fit(self) -> None:
        self.teacher.to(self.dls.device)

    def before_batch(self) -> None:
        """Takes a clean copy (``augment.KeepCleanView``) off the targets, so the loss sees the label alone."""
        self._clean = None
        if len(self.yb) > 1:
            self._clean = self.yb[1]
            self.learn.yb = self.yb[:1]

    def after_loss(self) -> None:
        if not self.training or self.alpha == 0:
            return
        with torch.no_grad():
            seen = self.xb[0] if self._clean is None else self._clean
            teacher_logits = self.teacher(seen).float()
        target = self.yb[0]
        self.learn.loss_grad = distillation_loss(self.pred.float(), teacher_logits, target, self.temperature,
                                                 self.alpha, self.only_right)
        self.learn.loss = self.learn.loss_grad.detach().clone()
