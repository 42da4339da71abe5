"""Session 7 lecture script: layer-by-layer linear CKA between two stages of the post-training pipeline on the same texts.

    python code/lectures/s07_cka.py                                          # pipeline_base against pipeline_rl
    python code/lectures/s07_cka.py --stages pipeline_sft pipeline_dpo --texts 200
    python code/lectures/s07_cka.py --stages pipeline_base pipeline_base    # the sanity check: 1 on the diagonal
    python code/lectures/s07_cka.py --png cka.png                            # also save the heatmap

Both stages read the same --texts held-out reviews (the "reviews" role's test split, shuffled with --seed; tiny: the
synthetic reviews, full: IMDB), each cut to --max-length tokens. Every layer's token states (the embeddings, then each
block's output) are pooled into one vector per text (the mean over tokens without each text's first token, or the last
token), and every layer of stage A is compared with every layer of stage B by linear CKA (Kornblith et al., 2019;
rl4lm.analysis.representations.cka_matrix): rows are A's layers, columns B's. The diagonal, layer against the same
layer, is printed again next to the debiased CKA (Song et al., 2012; near 0 for unrelated states at any number of texts)
and the page's shuffled-input baseline: A's layer against B's layer on other texts (B's rows permuted with --seed),
what CKA gives for representations that share only their statistics.

The stages are loaded one at a time, in the profile's inference dtype on the GPU if there is one. A bad value (--texts
below 4 or beyond the split, --png into a folder that does not exist or cannot be written) is one line on stderr
and exit status 2, and so is a heatmap that cannot be saved (after the grid is printed).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from rl4lm.assets.roles import PIPELINE_ROLES
from rl4lm.labs import Parser, release_memory, run_main, start_lecture

MAX_SEED = 2**63 - 1  # numpy generators take any non-negative integer; torch's 64 bits set the limit used everywhere
POOLINGS = ("mean", "last")  # as rl4lm.analysis.representations.POOLINGS, without importing torch before the checks
MIN_TEXTS = 4  # the debiased CKA's unbiased HSIC needs four inputs


def parser() -> Parser:
    """The command line: every option with its help text."""
    cli = Parser(__doc__)
    cli.add_argument("--stages", nargs=2, choices=PIPELINE_ROLES, default=["pipeline_base", "pipeline_rl"], metavar=("A", "B"),
                     help=f"the two pipeline stages compared, A (rows) and B (columns), from {', '.join(PIPELINE_ROLES)}; "
                          "the same stage twice gives 1 on the diagonal")
    cli.add_argument("--texts", type=int, default=300,
                     help=f"held-out reviews both stages read, the inputs of CKA (at least {MIN_TEXTS})")
    cli.add_argument("--pooling", choices=POOLINGS, default="mean",
                     help="one vector per text and layer: the mean over its tokens (without the first) or its last token")
    cli.add_argument("--max-length", type=int, default=128,
                     help="tokens kept of each review (at least 2), the rest cut off")
    cli.add_argument("--seed", type=int, default=0,
                     help=f"seed of the texts drawn and of the shuffled baseline (0 to {MAX_SEED}); the same seed prints the same grid")
    cli.add_argument("--png", type=Path, default=argparse.SUPPRESS,
                     help="also save the CKA matrix as a heatmap in this PNG file (its folder must exist)")
    return cli


def checked_arguments(cli: Parser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed options, with ``png`` None when no heatmap is asked for; a bad value that needs no data exits with one sentence."""
    args = cli.parse_args(argv)
    args.png = getattr(args, "png", None)
    if args.texts < MIN_TEXTS:
        cli.error(f"--texts must be at least {MIN_TEXTS} (the debiased CKA needs four inputs), not {args.texts}")
    if args.max_length < 2:
        cli.error(f"--max-length must be at least 2 tokens, not {args.max_length}")
    if not 0 <= args.seed <= MAX_SEED:
        cli.error(f"--seed must be between 0 and {MAX_SEED}, not {args.seed}")
    if args.png is not None:
        check_png(cli, args.png)
    return args


def check_png(cli: Parser, png: Path) -> None:
    """Exit with one sentence unless ``png`` names a .png file in an existing folder that this user may write to."""
    if not png.name:
        cli.error("--png is empty: name the heatmap's file, e.g. --png cka.png")
    if png.suffix.lower() != ".png":
        cli.error(f"--png {png} does not end in .png: name the heatmap's file e.g. cka.png")
    if not png.parent.is_dir():
        cli.error(f"--png {png}: the folder {png.parent} does not exist; create it first or save elsewhere")
    if png.is_dir():
        cli.error(f"--png {png} is a folder: name a file inside it, e.g. --png {png / 'cka.png'}")
    if not os.access(png.parent, os.W_OK) or (png.exists() and not os.access(png, os.W_OK)):
        cli.error(f"--png {png}: you may not write there; save the heatmap in a folder of yours")


def held_out_reviews(cli: Parser, n_texts: int, seed: int) -> list[str]:
    """``n_texts`` reviews of the test split, shuffled with ``seed`` (as on the session page); too many exits with one sentence."""
    from rl4lm import profiles

    reviews = profiles.load_dataset("reviews", split="test")
    if n_texts > len(reviews):
        cli.error(f"--texts {n_texts} is more than the {len(reviews)} reviews of the test split; use --texts {len(reviews)} or less")
    return list(reviews.shuffle(seed=seed).select(range(n_texts))["text"])


def pooled_states(role: str, texts: list[str], pooling: str, max_length: int, device: str) -> list:
    """Every layer's pooled states (n, d) of one stage, float32 on the CPU; the model is loaded alone and then freed."""
    from rl4lm import profiles
    from rl4lm.analysis.representations import layer_states

    tokenizer = profiles.load_tokenizer(role)
    model = profiles.load_model(role, dtype=profiles.inference_dtype(device)).to(device)
    batch_size = 32 if profiles.current_profile() == "tiny" else 16
    states = layer_states(model, tokenizer, texts, batch_size, pooling, max_length, skip_first_token=pooling == "mean")
    del model  # one model in memory at a time
    release_memory(device)
    return states  # L + 1 tensors (n, d): the embeddings, then each block


def layer_names(n_states: int) -> list[str]:
    """'emb' for the embeddings, then the blocks 1 .. L."""
    return ["emb"] + [str(i) for i in range(1, n_states)]


def print_grid(matrix, stage_a: str, stage_b: str) -> None:
    """The CKA matrix as text: one row per layer of A, one column per layer of B."""
    rows, columns = layer_names(matrix.shape[0]), layer_names(matrix.shape[1])
    print(f"linear CKA, rows: layers of {stage_a} (A), columns: layers of {stage_b} (B)")
    print("      " + "".join(f"{name:>6}" for name in columns))
    for name, row in zip(rows, matrix):
        print(f"{name:>6}" + "".join(f"{value:6.2f}" for value in row))


def diagonal_rows(states_a: list, states_b: list, matrix, seed: int) -> list[dict]:
    """Per layer: CKA(A_l, B_l), its debiased estimate, and CKA of A_l against B_l of other texts (B's rows permuted)."""
    import numpy as np

    from rl4lm.analysis.representations import cka_matrix, debiased_linear_cka

    shuffled = np.random.default_rng(seed).permutation(len(states_a[0]))  # text i of A meets text shuffled[i] of B
    return [{"layer": name, "cka": float(matrix[i, i]), "debiased": debiased_linear_cka(a, b),
             "shuffled": float(cka_matrix([a], [b[shuffled]])[0, 0])}  # the Gram form: (n, n) products, cheap when d > n
            for i, (name, a, b) in enumerate(zip(layer_names(len(states_a)), states_a, states_b))]


def save_heatmap(matrix, stage_a: str, stage_b: str, n_texts: int, path: Path) -> None:
    """Save the CKA matrix as a heatmap (rows: A's layers, columns: B's) with rl4lm.plots' style."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed: the figure only goes to a file
    import matplotlib.pyplot as plt
    import numpy as np

    from rl4lm import plots

    rows, columns = layer_names(matrix.shape[0]), layer_names(matrix.shape[1])
    fig, ax = plots.figure(width=max(5.6, 2.4 + 0.45 * len(columns)), height=max(4.4, 1.8 + 0.4 * len(rows)))
    image = ax.imshow(matrix, origin="lower", vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.grid(False)
    if len(rows) * len(columns) <= 100:  # small enough to print every value
        for (i, j), value in ((ij, matrix[ij]) for ij in np.ndindex(matrix.shape)):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="black" if value > 0.6 else "white")
    fig.colorbar(image, ax=ax, label="linear CKA")
    plots.label(ax, f"{stage_a} vs {stage_b}\nlowest diagonal CKA {min(np.diag(matrix)):.2f} on {n_texts} texts",
                f"layer of {stage_b}", f"layer of {stage_a}")
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Print the CKA matrix of two stages, its diagonal with the debiased value and the shuffled-input baseline; save a heatmap."""
    cli = parser()
    args = checked_arguments(cli, argv)
    from rl4lm.analysis.representations import cka_matrix

    device = start_lecture(args.seed)  # the only seed: the texts drawn and the shuffled baseline use it too
    stage_a, stage_b = args.stages
    texts = held_out_reviews(cli, args.texts, args.seed)
    states_a = pooled_states(stage_a, texts, args.pooling, args.max_length, device)
    states_b = states_a if stage_b == stage_a else pooled_states(stage_b, texts, args.pooling, args.max_length, device)
    matrix = cka_matrix(states_a, states_b)  # (layers of A, layers of B)
    print(f"\n{len(texts)} held-out reviews (seed {args.seed}), {args.pooling} pooling, at most {args.max_length} tokens each, "
          f"width {states_a[0].shape[1]}, on {device}\n")
    print_grid(matrix, stage_a, stage_b)
    rows = diagonal_rows(states_a, states_b, matrix, args.seed)
    print(f"\nthe diagonal: each layer of {stage_a} against the same layer of {stage_b}")
    print(f"{'layer':>6}  {'CKA':>6}  {'debiased':>8}  {'shuffled texts':>14}")
    for row in rows:
        print(f"{row['layer']:>6}  {row['cka']:6.3f}  {row['debiased']:8.3f}  {row['shuffled']:14.3f}")
    best = sum(int(matrix[i].argmax() == i) for i in range(min(matrix.shape)))
    print(f"\nthe diagonal entry is the largest of its row in {best} of {matrix.shape[0]} layers; "
          f"the shuffled-input baseline is at most {max(row['shuffled'] for row in rows):.3f}")
    if args.png is not None:
        try:
            save_heatmap(matrix, stage_a, stage_b, len(texts), args.png)
        except OSError as error:  # the disk filled up, or the folder went away while the states were computed
            cli.error(f"--png {args.png}: the heatmap could not be saved ({error.strerror or type(error).__name__}); the grid above is complete")
        print(f"heatmap saved to {args.png}")


if __name__ == "__main__":
    run_main(main)
