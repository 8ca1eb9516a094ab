"""Table 2's trained baselines against values worked out by hand: CSS (Mozannar & Sontag 2020's cost-
sensitive softmax with an abstain output) and group DRO with a logit-adjusted inner loss."""

from __future__ import annotations

import math

import pytest
import torch

from argse.config.loading import load_run_config
from argse.config.schema import parse
from argse.core.errors import ArgseError
from argse.data.long_tail import prepare_data
from argse.experts import ExpertContext, build_expert
from argse.experts.css import CSSRecipe, css_abstains, css_loss, with_abstain
from argse.experts.group_dro import GroupDRORecipe, dro_update, group_dro_loss, group_log_prior, group_losses
from argse.experts.losses import logit_adjusted_loss
from argse.training.checkpoints import LAST, load_checkpoint


def test_css_loss_weights_the_label_by_one_and_abstain_by_one_minus_the_cost():
    # margins [0, 0]: the three outputs (2 classes, abstain) are equally likely: -log(1/3) * (1 + 0.5)
    assert css_loss(torch.zeros(1, 2), torch.tensor([0]), 0.5).item() == pytest.approx(1.5 * math.log(3))
    # margins [log 2, 0]: p = [1/2, 1/4] and abstain 1/4; cost 0 -> -log(1/2) - log(1/4) = 3 log 2
    m = torch.tensor([[math.log(2.0), 0.0]])
    assert css_loss(m, torch.tensor([0]), 0.0).item() == pytest.approx(3 * math.log(2))
    # cost 1: abstaining earns nothing, the loss is plain cross-entropy over the three outputs: -log(1/4)
    assert css_loss(m, torch.tensor([1]), 1.0).item() == pytest.approx(math.log(4))


def test_abstain_output_is_the_fixed_zero_logit():
    m = torch.tensor([[0.3, -1.0]])
    assert torch.equal(with_abstain(m), torch.tensor([[0.3, -1.0, 0.0]]))
    assert css_abstains(torch.tensor([[-0.1, -2.0], [0.3, -1.0], [0.0, -1.0]])).tolist() == [True, False, False]


@pytest.mark.parametrize(("eta", "cost", "abstains"), [([0.6, 0.4], 0.5, False), ([0.3, 0.3, 0.4], 0.5, True),
                                                       ([0.3, 0.3, 0.4], 0.7, False)])  # fmt: skip
def test_css_minimiser_abstains_where_chow_would(eta, cost, abstains):
    """The loss's minimiser for one input with label distribution eta is p_y ~ eta_y, p_abstain ~ 1 - c,
    so it abstains iff max eta < 1 - c: Chow's rule at threshold 1 - c (Mozannar & Sontag 2020). The expected
    loss is convex in the margins, so a zero gradient there proves the minimum."""
    eta_t = torch.tensor(eta, dtype=torch.float64)
    margins = torch.log(eta_t / (1 - cost))[None].requires_grad_()  # log(p_y / p_abstain) at the minimiser
    labels = torch.arange(len(eta))
    # E_y[loss] = sum_y eta_y css_loss(margins, y): the batch mean of css_loss over every label, weighted
    loss = sum(eta_t[y] * css_loss(margins, labels[y : y + 1], cost) for y in range(len(eta)))
    (grad,) = torch.autograd.grad(loss, margins)
    assert grad.abs().max() < 1e-12
    assert css_abstains(margins.detach()).item() is abstains
    nudged = margins.detach() + 0.01  # and the value really is higher off the minimiser
    assert sum(eta_t[y] * css_loss(nudged, labels[y : y + 1], cost) for y in range(len(eta))) > loss


def test_css_recipe_refuses_costs_outside_zero_one():
    with pytest.raises(ArgseError, match=r"^config key 'recipes\.css\.cost' must be <= 1, got 1\.5$"):
        parse(CSSRecipe, {"cost": 1.5}, "recipes.css")
    with pytest.raises(ArgseError, match=r"^config key 'recipes\.css\.costs\[1\]' must be >= 0, got -0\.1$"):
        parse(CSSRecipe, {"costs": [0.5, -0.1]}, "recipes.css")


def test_group_losses_average_within_each_group_and_leave_absent_groups_at_zero():
    per_sample = torch.tensor([1.0, 2.0, 3.0, 4.0])
    groups = torch.tensor([0, 1, 1, 0])
    assert group_losses(per_sample, groups, 3).tolist() == [2.5, 2.5, 0.0]


def test_dro_update_is_exponentiated_gradient_ascent():
    q = dro_update(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 2.0]), torch.zeros(2), 1.0)
    e = math.e
    assert q.tolist() == pytest.approx([1 / (1 + e), e / (1 + e)])


def test_group_dro_loss_by_hand():
    """Two samples, one per group, zero logits, prior (3/4, 1/4): balanced losses -log 3/4 and -log 1/4 move
    q; the model's loss is then CE of logits + log pi - log q_[y] for both samples."""
    log_pi = torch.tensor([0.75, 0.25]).log()
    q0, adj, step = torch.tensor([0.5, 0.5]), torch.tensor([0.1, 0.2]), 0.5
    loss, q = group_dro_loss(torch.zeros(2, 2), torch.tensor([0, 1]), log_pi, torch.tensor([0, 1]), q0, adj, step)
    l0, l1 = -math.log(0.75), -math.log(0.25)
    w0, w1 = math.exp(step * (l0 + 0.1)), math.exp(step * (l1 + 0.2))
    a, b = w0 / (w0 + w1), w1 / (w0 + w1)
    assert q.tolist() == pytest.approx([a, b])
    p0 = (0.75 / a) / (0.75 / a + 0.25 / b)  # softmax of (log 3/4 - log a, log 1/4 - log b)
    assert loss.item() == pytest.approx((-math.log(p0) - math.log(1 - p0)) / 2)


def test_group_dro_with_uniform_weights_is_the_logit_adjusted_loss():
    logits, targets = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    log_pi = torch.tensor([0.7, 0.2, 0.1]).log()
    # step 0: q stays uniform, and a constant shift of every logit leaves the cross-entropy unchanged
    loss, _ = group_dro_loss(logits, targets, log_pi, torch.tensor([0, 0, 1]), torch.tensor([0.5, 0.5]),
                             torch.zeros(2), 1e-12)  # fmt: skip
    assert loss.item() == pytest.approx(logit_adjusted_loss(logits, targets, log_pi).item(), rel=1e-6)


def test_group_dro_loss_gradient_flows_through_the_losses_not_the_weights():
    logits = torch.zeros(2, 2, requires_grad=True)
    loss, q = group_dro_loss(logits, torch.tensor([0, 1]), torch.zeros(2), torch.tensor([0, 1]),
                             torch.tensor([0.5, 0.5]), torch.zeros(2), 1.0)  # fmt: skip
    loss.backward()
    assert not q.requires_grad and logits.grad.abs().sum() > 0


def test_group_dro_recipe_refuses_a_step_of_zero():
    with pytest.raises(ArgseError, match=r"^config key 'recipes\.group_dro\.dro_step' must be > 0, got 0\.0$"):
        parse(GroupDRORecipe, {"dro_step": 0.0}, "recipes.group_dro")


def test_group_log_prior_gives_each_class_its_groups_share():
    prior = group_log_prior(torch.tensor([0, 0, 1]), torch.tensor([70, 20, 10]), 2).exp()
    assert prior.tolist() == pytest.approx([0.9, 0.9, 0.1])


def _minimiser(eta: torch.Tensor, log_pi: torch.Tensor, class_group: torch.Tensor) -> torch.Tensor:
    """The scores f minimising the expected DRO loss at one x with class posterior eta (q held uniform)."""
    f = torch.zeros(len(eta), requires_grad=True)
    opt = torch.optim.LBFGS([f], max_iter=200, line_search_fn="strong_wolfe")
    labels = torch.arange(len(eta))

    def closure():
        opt.zero_grad()
        q = torch.full((2,), 0.5)
        per_label = [group_dro_loss(f[None], y[None], log_pi, class_group, q, torch.zeros(2), 1e-12)[0] for y in labels]
        loss = (eta * torch.stack(per_label)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return f.detach()


def test_the_group_prior_makes_the_loss_minimiser_the_group_conditional_bayes_classifier():
    """Eq. 5's error is conditional on the group: the Bayes classifier of the mean of the two groups' errors is
    argmax eta_y / pi_G[y]. With eta (0.5, 0.4, 0.1), classes 0 and 1 in a head of prior 0.9 (70 and 20
    images) and class 2 alone in a tail of 0.1, that is class 2 (0.1/0.1 > 0.5/0.9); adjusting by each class's
    own prior instead would predict class 1 (0.4/0.2 = 2)."""
    eta, groups, counts = torch.tensor([0.5, 0.4, 0.1]), torch.tensor([0, 0, 1]), torch.tensor([70, 20, 10])
    by_group = _minimiser(eta, group_log_prior(groups, counts, 2), groups)
    by_class = _minimiser(eta, (counts / counts.sum()).log(), groups)
    assert by_group.argmax().item() == 2 and by_class.argmax().item() == 1
    expected = eta.log() - torch.tensor([0.9, 0.9, 0.1]).log()
    assert (by_group - by_group.mean()).tolist() == pytest.approx((expected - expected.mean()).tolist(), abs=1e-3)


@pytest.mark.parametrize("inner_prior", ["group", "class"])
def test_the_group_dro_expert_adjusts_by_the_prior_its_recipe_names(tiny, tmp_path, inner_prior):
    cfg = load_run_config(None, [*tiny, f"recipes.group_dro.inner_prior={inner_prior}"])
    ctx = ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), {"group_dro": tmp_path / "train"})
    expert = build_expert("group_dro", ctx)
    groups, counts = ctx.data.groups, ctx.data.class_counts
    want = group_log_prior(groups.of_class, counts, groups.k) if inner_prior == "group" else ctx.log_prior
    assert torch.allclose(expert.log_pi, want)
    assert inner_prior == "class" or not torch.allclose(expert.log_pi, ctx.log_prior)


def test_an_interrupted_group_dro_training_continues_with_its_group_weights(tmp_path, monkeypatch):
    """q is part of the training state: a training stopped after epoch 2 and continued ends with the weights and
    q of an uninterrupted one (without q in the checkpoint it would restart from uniform and differ)."""
    from tests.conftest import tiny_overrides
    from tests.test_training import _interrupt_after, _weights

    def expert(run: str):
        cfg = load_run_config(None, tiny_overrides(tmp_path / run, **{"recipes.group_dro.epochs": "3"}))
        ctx = ExpertContext(cfg, prepare_data(cfg), torch.device("cpu"), {"group_dro": tmp_path / run / "train"})
        return build_expert("group_dro", ctx)

    whole = expert("a")
    whole.train()
    _interrupt_after(2, expert("b").train, monkeypatch)
    assert torch.allclose(load_checkpoint(tmp_path / "b" / "train" / LAST)[0]["loss.dro_q"].sum(), torch.tensor(1.0))
    resumed = expert("b")
    resumed.train()
    assert torch.equal(whole.q, resumed.q) and not torch.equal(whole.q, torch.full_like(whole.q, 0.5))
    a, b = (_weights(tmp_path / run / "train" / LAST) for run in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
