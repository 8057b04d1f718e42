"""Speed and agreement of the exact hyperbolic InfoNCE (Eq. 16) against plain autograd.

    python benchmarks/bench_infonce.py [--items 6086] [--dim 50] [--repeats 7]

Both compute every item of one view against every item of the other (Beauty
has 6086 items). Prints the median forward+backward seconds of plain autograd
(the N x N matrix at once) and of the chunked fused version for several chunk
sizes, measured in the same run, and the largest gradient difference.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recbole_hyperllm.losses import hyperbolic_infonce, hyperbolic_infonce_reference  # noqa: E402
from recbole_hyperllm.manifold import LorentzBall  # noqa: E402


def timed(loss_fn, h1, h2, repeats):
    seconds = []
    for _ in range(repeats):
        h1.grad = h2.grad = None
        start = time.perf_counter()
        loss = loss_fn()
        loss.backward()
        seconds.append(time.perf_counter() - start)
    return loss.item(), statistics.median(seconds), h1.grad.clone(), h2.grad.clone()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=6086)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chunks", default="64,128,256,512")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    manifold = LorentzBall(1.5)
    tangent = torch.empty(args.items, args.dim).uniform_(-0.3, 0.3)
    h1 = manifold.expmap0_capped(tangent).requires_grad_()
    h2 = manifold.expmap0_capped(tangent + 0.05 * torch.randn_like(tangent)).requires_grad_()
    ref_loss, ref_sec, ref_g1, ref_g2 = timed(lambda: hyperbolic_infonce_reference(h1, h2, args.tau), h1, h2, args.repeats)
    print(f"threads={torch.get_num_threads()} items={args.items} dim={args.dim}")
    print(f"{'version':>16s} {'median s':>9s} {'speed-up':>8s} {'loss':>14s} {'max |grad diff|':>16s}")
    print(f"{'plain autograd':>16s} {ref_sec:9.3f} {1.0:8.2f} {ref_loss:14.4f} {0.0:16.2e}")
    for chunk in [int(c) for c in args.chunks.split(",")]:
        loss, sec, g1, g2 = timed(lambda: hyperbolic_infonce(h1, h2, args.tau, chunk), h1, h2, args.repeats)
        diff = max((g1 - ref_g1).abs().max().item(), (g2 - ref_g2).abs().max().item())
        print(f"{'chunk ' + str(chunk):>16s} {sec:9.3f} {ref_sec / sec:8.2f} {loss:14.4f} {diff:16.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
