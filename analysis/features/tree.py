"""Definition trees for a feature's "ghost token" (Watkins' SAE multitool, generalised to any model).

The ghost token is the feature vector ``g`` (see ``features_vectors.ghost_vector``) fed through
``inputs_embeds`` at the placeholder position of the base prompt; the embedding matrix is never
modified. From the prompt the model's top-k next tokens are expanded depth-first-equivalently: a
child is kept when the cumulative probability of its path is >= ``cutoff``; a branch ends at
``max_depth``, at a token holding the closing quote, or at EOS. The placeholder token is excluded
from continuations (probabilities are NOT renormalised: a node's probability is exactly the product
of the model's next-token probabilities along its path). All nodes of one level have the same
length, so each level is one batched forward (chunks of ``batch``) without padding.
Hand-written: no library builds these trees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from analysis.capture import capture
from analysis.errors import InputError
from analysis.features.sae import LoadedSAE
from analysis.features.vectors import VectorOptions, ghost_vector
from analysis.jobs import Job, quiet_job
from analysis.models import LoadedModel
from analysis.params import parse_float, parse_int
from analysis.runtime import Runtime

GHOST = "<ghost>"
DEFAULT_PROMPT = 'A typical definition of "<ghost>" would be "'
MAX_NODES = 4000


@dataclass(frozen=True)
class TreeOptions:
    prompt: str = DEFAULT_PROMPT
    top_k: int = 5
    cutoff: float = 1e-5  # the original notebook's cumulative-probability cut-off
    max_depth: int = 25
    batch: int = 64

    def check(self) -> TreeOptions:
        if self.prompt.count(GHOST) != 1:
            raise InputError(f"The base prompt must contain the placeholder {GHOST} exactly once.", field="features-prompt")
        if len(self.prompt) > 500:
            raise InputError(f"The base prompt has {len(self.prompt)} characters; the limit is 500.",
                             field="features-prompt")
        parse_int(self.top_k, "Top-k", 1, 10, field="features-topk")
        parse_float(self.cutoff, "Cum. prob. cut-off", 1e-8, 1, high_open=True, field="features-cutoff")
        parse_int(self.max_depth, "Max depth", 1, 40, field="features-depth")
        return self


@dataclass
class TreeNode:
    """One node: the token appended, its conditional and cumulative probability, its parent."""

    id: int
    parent: int | None  # None for the root (the prompt)
    token_id: int | None
    token: str
    prob: float  # p(token | prompt + path to parent)
    cum_prob: float  # product along the path
    depth: int
    children: list[int] = field(default_factory=list)
    terminal: bool = False


@dataclass
class DefinitionTree:
    nodes: list[TreeNode]
    prompt: str
    feature: int
    seconds: float
    forwards: int
    truncated: bool

    def path_ids(self, node_id: int) -> list[int]:
        ids = []
        node = self.nodes[node_id]
        while node.parent is not None:
            ids.append(int(node.token_id))
            node = self.nodes[node.parent]
        return ids[::-1]

    def as_dict(self) -> dict:
        return {
            "prompt": self.prompt, "feature": self.feature, "seconds": self.seconds, "forwards": self.forwards,
            "truncated": self.truncated,
            "nodes": [n.__dict__ for n in self.nodes],
        }


def prompt_ids(lm: LoadedModel, prompt: str) -> tuple[list[int], int]:
    """Token ids of the prompt with one placeholder id at the ghost position, and that position."""
    before, after = prompt.split(GHOST)
    tok = lm.tokenizer
    head = tok(before, add_special_tokens=True)["input_ids"] if before else []
    if not before and tok.bos_token_id is not None:
        head = [tok.bos_token_id]
    tail = tok(after, add_special_tokens=False)["input_ids"] if after else []
    placeholder = placeholder_id(lm)
    return list(head) + [placeholder] + list(tail), len(head)


def placeholder_id(lm: LoadedModel) -> int:
    """Token id sitting at the ghost position (its embedding is replaced; excluded from continuations)."""
    tok = lm.tokenizer
    for candidate in (tok.unk_token_id, tok.pad_token_id, tok.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _ends(text: str) -> bool:
    return '"' in text


def build_tree(
    runtime: Runtime,
    lm: LoadedModel,
    sae: LoadedSAE,
    feature: int,
    vector: VectorOptions | None = None,
    options: TreeOptions | None = None,
    job: Job | None = None,
) -> DefinitionTree:
    """Expand the definition tree of ``feature`` level by level (one batched forward per chunk)."""
    vector = vector or VectorOptions()
    options = (options or TreeOptions()).check()
    job = job or quiet_job()
    start = time.time()
    g = ghost_vector(runtime, lm, sae, feature, vector)
    ids, ghost_pos = prompt_ids(lm, options.prompt)
    embed = lm.model.get_input_embeddings()
    with torch.inference_mode():
        base = embed(torch.tensor([ids], device=lm.device))[0].clone()
        base[ghost_pos] = g.to(base.device, base.dtype)
    excluded = placeholder_id(lm)
    eos = lm.tokenizer.eos_token_id
    nodes = [TreeNode(id=0, parent=None, token_id=None, token=options.prompt, prob=1.0, cum_prob=1.0, depth=0)]
    frontier = [0]
    forwards = 0
    truncated = False
    job.phase("expanding the tree", total=options.max_depth, unit="levels")
    for depth in range(1, options.max_depth + 1):
        if not frontier:
            break
        job.check()
        job.update(depth - 1, f"{len(frontier):,} open branches, {len(nodes) - 1:,} nodes")
        next_frontier: list[int] = []
        for chunk_start in range(0, len(frontier), options.batch):
            chunk = frontier[chunk_start : chunk_start + options.batch]
            paths = [nodes_path(nodes, n) for n in chunk]
            with torch.inference_mode():
                if depth > 1:
                    path_emb = embed(torch.tensor(paths, device=lm.device))
                    inputs = torch.cat([base.expand(len(chunk), -1, -1), path_emb], dim=1)
                else:
                    inputs = base.expand(len(chunk), -1, -1)
                out = capture(lm, None, [], inputs_embeds=inputs.contiguous())
                forwards += 1
                probs = torch.softmax(out.logits[:, -1].float(), dim=-1)
                probs[:, excluded] = -1.0  # never a continuation, never renormalised
                top = torch.topk(probs, options.top_k, dim=-1)
            for row, parent_id in enumerate(chunk):
                parent = nodes[parent_id]
                for p, tid in zip(top.values[row].tolist(), top.indices[row].tolist(), strict=True):
                    cum = parent.cum_prob * p
                    if p <= 0 or cum < options.cutoff:
                        continue
                    if len(nodes) >= MAX_NODES:
                        truncated = True
                        break
                    text = lm.decode([tid])[0]
                    node = TreeNode(id=len(nodes), parent=parent_id, token_id=tid, token=text, prob=p,
                                    cum_prob=cum, depth=depth)
                    node.terminal = _ends(text) or tid == eos or depth == options.max_depth
                    nodes.append(node)
                    parent.children.append(node.id)
                    if not node.terminal:
                        next_frontier.append(node.id)
        frontier = next_frontier
    return DefinitionTree(nodes=nodes, prompt=options.prompt, feature=feature, seconds=time.time() - start,
                          forwards=forwards, truncated=truncated)


def nodes_path(nodes: list[TreeNode], node_id: int) -> list[int]:
    ids = []
    node = nodes[node_id]
    while node.parent is not None:
        ids.append(int(node.token_id))
        node = nodes[node.parent]
    return ids[::-1]


def tree_layout(tree: DefinitionTree, min_prob: float = 0.0) -> dict:
    """Plain data for drawing: nodes kept by ``min_prob`` (the trim slider), x = depth, y = DFS leaf order."""
    keep = {n.id for n in tree.nodes if n.cum_prob >= min_prob}
    ys: dict[int, float] = {}
    counter = [0]

    def place(node_id: int) -> float:
        kids = [c for c in sorted(tree.nodes[node_id].children, key=lambda c: -tree.nodes[c].cum_prob) if c in keep]
        if not kids:
            ys[node_id] = float(counter[0])
            counter[0] += 1
        else:
            ys[node_id] = sum(place(c) for c in kids) / len(kids)
        return ys[node_id]

    place(0)
    nodes = [
        {"id": n.id, "parent": n.parent, "x": n.depth, "y": ys[n.id], "token": n.token, "prob": n.prob,
         "cum_prob": n.cum_prob, "terminal": n.terminal}
        for n in tree.nodes if n.id in ys
    ]
    return {"nodes": nodes, "prompt": tree.prompt, "feature": tree.feature, "leaves": counter[0]}


def definitions(tree: DefinitionTree, top: int = 20) -> list[tuple[str, float]]:
    """Most probable complete branches as text (leaves by cumulative probability)."""
    leaves = [n for n in tree.nodes if n.parent is not None and not n.children]
    leaves.sort(key=lambda n: -n.cum_prob)
    out = []
    for leaf in leaves[:top]:
        parts = []
        node = leaf
        while node.parent is not None:
            parts.append(node.token)
            node = tree.nodes[node.parent]
        out.append(("".join(reversed(parts)), leaf.cum_prob))
    return out
