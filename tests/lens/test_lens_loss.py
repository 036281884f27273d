"""The tuned-lens training loss: the fused logsumexp and the rearranged KL against autograd's plain forms."""

from __future__ import annotations

import pytest
import torch

from analysis.lens.train import LogSumExpUnembed, final_terms, layer_kl


def _case(seed: int = 0, rows: int = 7, d: int = 16, vocab: int = 50):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, d, generator=gen, dtype=torch.float64) * 2
    weight = torch.randn(vocab, d, generator=gen, dtype=torch.float64)
    return z, weight


@pytest.mark.parametrize("block", [1, 3, 128])
def test_fused_logsumexp_value_and_gradient_match_autograd(block):
    z, weight = _case()
    ours_in = z.clone().requires_grad_(True)
    ours = LogSumExpUnembed.apply(ours_in, weight, block)
    grad_out = torch.randn(ours.shape, dtype=torch.float64)
    (ours * grad_out).sum().backward()
    ref_in = z.clone().requires_grad_(True)
    ref = torch.logsumexp(ref_in @ weight.T, dim=-1)
    (ref * grad_out).sum().backward()
    # the forward keeps float32 logits (as in training), so float32 tolerances
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_in.grad.double(), ref_in.grad, rtol=1e-5, atol=1e-5)


def test_fused_logsumexp_keeps_batch_shape():
    z, weight = _case(rows=12)
    out = LogSumExpUnembed.apply(z.reshape(3, 4, -1).float(), weight.float())
    assert out.shape == (3, 4)
    torch.testing.assert_close(out.reshape(-1), torch.logsumexp(z.float() @ weight.float().T, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_bias", [False, True])
def test_rearranged_kl_equals_tuned_lens_kl_and_its_gradient(with_bias):
    """neg_h - z.(p_f W) + logsumexp(z W^T + b) == sum p_f (log p_f - log_softmax(z W^T + b)), value and grad."""
    z, weight = _case(seed=1)
    z, weight = z.float(), weight.float()
    bias = torch.randn(weight.shape[0]) if with_bias else None
    final_logits = torch.randn(z.shape[0], weight.shape[0]) * 3
    neg_h, u = final_terms(final_logits, weight, bias)
    ours_in = z.clone().requires_grad_(True)
    ours = layer_kl(ours_in, neg_h, u, weight, bias)
    ours.mean().backward()
    ref_in = z.clone().requires_grad_(True)
    logits = ref_in @ weight.T + (bias if bias is not None else 0.0)
    p_f = final_logits.log_softmax(-1).exp()
    ref = (p_f * (final_logits.log_softmax(-1) - logits.log_softmax(-1))).sum(-1)
    ref.mean().backward()
    assert (ref >= 0).all()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-4, atol=1e-5)
