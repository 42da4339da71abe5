"""The slides' figures that the course's own code computes, written as SVG into ``slides/figures/``.

    python -m rl4lm_book.slide_figures               # every figure (tiny profile: about a minute on two cores)
    python -m rl4lm_book.slide_figures --only s03-ppo-clip s08-dpo-weight

Each figure is one function below that calls the package (the losses, the tiny LM, the course's PPO, the CKA of
Session 7) and returns a matplotlib figure. The analytic ones (:data:`ANALYTIC`) need no model: their SVG is the same
byte for byte on every run, and a test regenerates them to check that the committed files are current. The others
load the profile's models (run them in the tiny profile: their captions on the slides say so) or train PPO.
Hand-drawn diagrams (the transformer block, the RLHF pipeline ...) are SVG files in the same folder, written by hand.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from rl4lm import plots, profiles  # noqa: E402

FIGURES_DIR = Path(__file__).resolve().parents[3] / "slides" / "figures"
SLIDE_STYLE = {"font.size": 13, "axes.titlesize": 14, "axes.labelsize": 13, "legend.fontsize": 12, "xtick.labelsize": 12,
               "ytick.labelsize": 12, "svg.fonttype": "path", "svg.hashsalt": "rl4lm-slides"}  # text as paths: no fonts needed
REVIEW = "this comedy was brilliant . i loved the acting ."


def slide_figure(ncols: int = 1, width: float = 8.0, height: float = 4.2):
    """A figure in the course style with slide-sized fonts: (fig, axes)."""
    plots.use_course_style()
    plt.rcParams.update(SLIDE_STYLE)
    return plt.subplots(1, ncols, figsize=(width, height), constrained_layout=True)


def ppo_clip() -> plt.Figure:
    """PPO's clipped surrogate min(rho A, clip(rho, 1 - eps, 1 + eps) A) against the ratio rho (Schulman et al., 2017, eq. 7)."""
    from rl4lm.rl.policy_gradient import ppo_clip_loss

    eps, ratios = 0.2, torch.linspace(0.0, 2.0, 401)  # (401,)
    fig, axes = slide_figure(ncols=2, height=3.8)
    for ax, advantage, color in zip(axes, (1.0, -1.0), (plots.COLORS[2], plots.COLORS[1])):
        objective = [-ppo_clip_loss(r.log().reshape(1), torch.zeros(1), torch.tensor([advantage]), eps).item() for r in ratios]
        ax.plot(ratios, ratios * advantage, color="grey", ls="--", lw=1.2, label="unclipped ρ·A")
        ax.plot(ratios, objective, color=color, lw=2.5, label="clipped objective")
        for edge in (1 - eps, 1 + eps):
            ax.axvline(edge, color="grey", lw=0.8, ls=":")
        ax.axvline(1.0, color="black", lw=0.8)
        where = f"above ρ = {1 + eps:.1f}" if advantage > 0 else f"below ρ = {1 - eps:.1f}"
        plots.label(ax, f"A {'>' if advantage > 0 else '<'} 0: no gain {where}",
                    r"ratio $\rho = \pi_\theta(a|s)\,/\,\pi_{\mathrm{old}}(a|s)$", "objective (A = ±1)", legend=True)
        ax.legend(loc="upper left" if advantage > 0 else "upper right")
    return fig


def bradley_terry() -> plt.Figure:
    """Bradley-Terry: P(chosen > rejected) = sigma(r_w - r_l) and the loss -log sigma(r_w - r_l) (Bradley & Terry, 1952)."""
    from rl4lm.rlhf.reward_model import bradley_terry_loss

    margins = torch.linspace(-6, 6, 241)  # (241,)
    losses = [bradley_terry_loss(m.reshape(1), torch.zeros(1))[0].item() for m in margins]
    fig, ax = slide_figure(height=3.8)
    ax.plot(margins, torch.sigmoid(margins), lw=2.5, label=r"$P(\mathrm{chosen} \succ \mathrm{rejected}) = \sigma(r_w - r_l)$")
    ax.plot(margins, losses, lw=2.5, color=plots.COLORS[1], label=r"loss $-\log \sigma(r_w - r_l)$")
    ax.axhline(np.log(2), color="grey", lw=0.8, ls=":")
    ax.annotate("log 2 at equal rewards", (0, np.log(2)), (1.2, 2.2), arrowprops={"arrowstyle": "->", "color": "grey"})
    plots.label(ax, "Only the difference of the two rewards matters", r"reward margin $r_w - r_l$", "probability / loss (nats)", legend=True)
    ax.set_ylim(0, 4)
    return fig


def dpo_weight() -> plt.Figure:
    """The DPO loss -log sigma(beta m) and its gradient weight sigma(-beta m) against the margin m (Rafailov et al., 2023, eq. 7-8)."""
    from rl4lm.rlhf.dpo import dpo_loss

    margins = torch.linspace(-10, 10, 201)  # (201,) log-ratio margins [log pi/pi_ref](y_w) - [log pi/pi_ref](y_l)
    fig, axes = slide_figure(ncols=2, height=3.2)
    for beta, color in zip((0.1, 0.5, 1.0), plots.COLORS):
        m = margins.clone().requires_grad_(True)
        loss, _, _ = dpo_loss(m, torch.zeros_like(m), torch.zeros_like(m), torch.zeros_like(m), beta)
        (grad,) = torch.autograd.grad(loss * len(m), m)  # d(-log sigma(beta m_i)) / d m_i = -beta sigma(-beta m_i)
        per_pair = [dpo_loss(x.reshape(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), beta)[0].item() for x in margins]
        axes[0].plot(margins, per_pair, lw=2.5, color=color, label=f"β = {beta}")
        axes[1].plot(margins, -grad / beta, lw=2.5, color=color, label=f"β = {beta}")
    plots.label(axes[0], "DPO loss −log σ(β·m)", "log-ratio margin m (nats)", "loss (nats)", legend=True)
    plots.label(axes[1], "Gradient weight σ(−β·m)", "log-ratio margin m (nats)", "gradient weight", legend=True)
    return fig


def grpo_advantages() -> plt.Figure:
    """Group-relative advantages (r_i - mean) / std of three groups of 8 answers (Shao et al., 2024, sec. 4.1.2)."""
    from rl4lm.rlhf.grpo import grpo_advantages as group_advantages

    groups = {"3 of 8 correct": [1, 0, 0, 1, 0, 0, 1, 0], "7 of 8 correct": [1, 1, 1, 0, 1, 1, 1, 1],
              "all 8 wrong": [0] * 8}
    rewards = torch.tensor([r for group in groups.values() for r in group], dtype=torch.float32)  # (24,)
    advantages = group_advantages(rewards, group_size=8).reshape(len(groups), 8)  # (3, 8)
    fig, axes = slide_figure(ncols=3, height=3.0, width=9.0)
    for ax, (name, group), adv in zip(axes, groups.items(), advantages):
        colors = [plots.COLORS[2] if r else plots.COLORS[1] for r in group]
        ax.bar(range(1, 9), adv, color=colors)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylim(-2.7, 2.7)
        ax.set_xticks(range(1, 9))
        plots.label(ax, name, "answer i (green: reward 1)", r"advantage $\hat{A}_i$" if ax is axes[0] else "")
    fig.suptitle("Each group is its own baseline: the rarer outcome counts most, a uniform group not at all",
                 fontweight="bold", fontsize=12)
    return fig


def attention() -> plt.Figure:
    """Causal self-attention weights softmax(QK^T / sqrt(d) + mask) of the profile's LM on one review (Vaswani et al., 2017)."""
    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm", attn_implementation="eager")
    ids = tokenizer(tokenizer.bos_token + REVIEW, return_tensors="pt").input_ids  # (1, seq), BOS first as on the Session 1 page
    with torch.no_grad():
        weights = model(input_ids=ids, output_attentions=True).attentions  # layers x (1, heads, seq, seq)
    tokens = ["BOS", *(tokenizer.decode(int(t)).strip() or "␣" for t in ids[0, 1:])]
    fig, axes = slide_figure(ncols=2, width=9.0, height=4.4)
    for ax, (layer, head) in zip(axes, ((0, 0), (len(weights) - 1, 0))):
        grid = weights[layer][0, head].numpy()  # (seq, seq), rows sum to 1, zero above the diagonal
        image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90)
        ax.set_yticks(range(len(tokens)), tokens)
        ax.grid(False)
        plots.label(ax, f"layer {layer + 1}, head {head + 1}", "attends to (key)", "token (query)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    return fig


def temperature() -> plt.Figure:
    """The LM's next-token distribution softmax(z / tau) after one prompt at three temperatures (Ackley et al., 1985)."""
    from rl4lm.lm.decoding import next_token_logits, temperature_softmax

    tokenizer, model = profiles.load_tokenizer("lm"), profiles.load_model("lm")
    ids = tokenizer("this comedy was", return_tensors="pt").input_ids  # (1, seq)
    logits = next_token_logits(model, ids)[0]  # (vocab,)
    top = logits.topk(10).indices  # the 10 most likely tokens at tau = 1
    fig, ax = slide_figure(height=3.9)
    width = 0.27
    for k, (tau, color) in enumerate(zip((0.5, 1.0, 2.0), plots.COLORS)):
        probs = temperature_softmax(logits, tau)[top]
        ax.bar(np.arange(len(top)) + (k - 1) * width, probs, width, color=color, label=f"τ = {tau}")
    ax.set_xticks(range(len(top)), [repr(tokenizer.decode(int(t))) for t in top], rotation=30)
    plots.label(ax, "P(next token | 'this comedy was'): low τ sharpens, high τ flattens", "token", "probability", legend=True)
    return fig


def cartpole_ppo() -> plt.Figure:
    """Episode returns of the course's PPO on CartPole-v1 (Schulman et al., 2017), as Session 3 trains it."""
    from rl4lm.rl.ppo import PPOConfig, train_ppo

    config = PPOConfig(seed=0)
    result = train_ppo(config)
    steps, returns = zip(*result.episode_returns)
    fig, ax = slide_figure(height=3.8)
    ax.scatter(steps, returns, s=5, alpha=0.35, label="one episode")
    ax.plot([h["step"] for h in result.history], [h["return_mean"] for h in result.history], lw=2.5, color=plots.COLORS[1],
            label=f"mean of the last {config.window}")
    ax.axhline(config.target_return, color="grey", ls="--", lw=1, label=f"target {config.target_return:.0f}")
    plots.label(ax, f"PPO balances the pole after {result.steps_to_threshold:,} environment steps", "environment steps",
                "return (steps balanced)", legend=True)
    return fig


def cka_heatmap() -> plt.Figure:
    """Linear CKA between every layer of the base and of the RL stage on the same reviews (Kornblith et al., 2019)."""
    from rl4lm.analysis.representations import cka_matrix, layer_states

    texts = list(profiles.load_dataset("reviews", split="test").shuffle(seed=0).select(range(600))["text"])  # the 600 reviews of Session 7 in tiny
    tokenizer = profiles.load_tokenizer("pipeline_base")
    states = {}
    for role in ("pipeline_base", "pipeline_rl"):
        states[role] = layer_states(profiles.load_model(role), tokenizer, texts, max_length=128, skip_first_token=True)
    grids = {"base vs base": cka_matrix(states["pipeline_base"], states["pipeline_base"]),
             "base vs RL": cka_matrix(states["pipeline_base"], states["pipeline_rl"])}
    fig, axes = slide_figure(ncols=2, width=8.4, height=4.0)
    names = ["emb", *(f"{k}" for k in range(1, len(states["pipeline_base"])))]
    for ax, (title, grid) in zip(axes, grids.items()):
        image = ax.imshow(grid, cmap="magma", vmin=0, vmax=1, origin="lower")
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=11, color="white" if value < 0.6 else "black")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.grid(False)
        plots.label(ax, title, "layer of the second model", "layer of the base")
    fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    return fig


ANALYTIC: dict[str, Callable[[], plt.Figure]] = {"s03-ppo-clip": ppo_clip, "s04-bradley-terry": bradley_terry,
                                                  "s08-dpo-weight": dpo_weight, "s08-grpo-advantages": grpo_advantages}
COMPUTED: dict[str, Callable[[], plt.Figure]] = {"s01-attention": attention, "s02-temperature": temperature,
                                                  "s03-cartpole-ppo": cartpole_ppo, "s07-cka-heatmap": cka_heatmap}
FIGURES = {**ANALYTIC, **COMPUTED}


def write_figure(name: str, folder: Path = FIGURES_DIR) -> Path:
    """Draw one figure and save it as ``folder/name.svg`` with no date in it (the same file on every run)."""
    torch.manual_seed(0)
    fig = FIGURES[name]()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.svg"
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    """Write the slides' computed figures (all, or those named with --only)."""
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="write only these figures")
    cli.add_argument("--out", type=Path, default=FIGURES_DIR, help="folder to write the SVG files into")
    args = cli.parse_args(argv)
    profiles.describe_profile()
    for name in args.only or FIGURES:
        print(f"wrote {write_figure(name, args.out)}")


if __name__ == "__main__":
    main()
