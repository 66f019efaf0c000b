"""C&W-EOT's vote check against its search's own check, side by side on one noisy model.

One committed pni checkpoint (its own test data), the noise on: C&W-L2 (``pni.attacks.cw_l2``,
EOT over the noise, the strong profile's lr at a reduced budget named in the output) runs
twice from the same seed on the same images, the ones the vote over fresh draws classifies
correctly:

  search-only  ``verify=False``: a point counts as found once its EOT draws' mean logits
               misclassify it (C&W-EOT as usually run)
  verified     ``verify=True`` (the default): it is kept only once a vote over other fresh
               draws misclassifies it too, so the binary search raises ``c`` until it does

For each it prints the search's successes, the vote-judged successes (``success``), the
mean L2 and each returned example's share of correct draws over 50 further fresh draws.

    python benchmarks/cw_verify.py                              # resnet20-pni-w (cpu scale), 8 images
    python benchmarks/cw_verify.py --model lenet5-pni-w --images 32
Run it from the repository's root with ``../shared/data`` beside it (the CIFAR-10 JPEG copy).
"""
from __future__ import annotations

import argparse

import torch

from pni.attacks.cw import cw_l2
from pni.attacks.votes import predict_votes
from pni.evaluation.opened_run import open_checkpoint
from pni.models.hub import default_root, pretrained_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20-pni-w", help="a registered cpu-scale name (pni.pretrained)")
    parser.add_argument("--images", type=int, default=8, help="initially correct test images attacked")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--binary-search-steps", type=int, default=5)
    parser.add_argument("--eot", type=int, default=5)
    parser.add_argument("--votes", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    run = open_checkpoint(str(default_root() / pretrained_entry(args.model).path), n=10 * args.images, subset_seed=0)
    x, y = run.data.tensors()
    model = run.model.eval()
    correct = (predict_votes(model, x, args.votes) == y).float().mean(0) > 0.5
    x, y = x[correct][:args.images], y[correct][:args.images]
    print(f"{args.model}: {len(y)} images the vote classifies correctly; C&W-L2 lr 0.01, {args.steps} steps x "
          f"{args.binary_search_steps} binary-search steps, EOT {args.eot}, votes {args.votes} (reduced budget)")
    for name, verify in (("search-only", False), ("verified", True)):
        torch.manual_seed(1)
        result = cw_l2(model, x, y, c=0.01, lr=0.01, steps=args.steps, binary_search_steps=args.binary_search_steps,
                       eot=args.eot, votes=args.votes, verify=verify)
        share = (predict_votes(model, result.x_adv, 50) == y).float().mean(0)
        print(f"{name:12s} search found {int(result.found.sum())}/{len(y)}, vote-judged success "
              f"{int(result.success.sum())}/{len(y)}, mean L2 of the successes {result.mean_l2:.3f}; "
              f"share of correct draws over 50 fresh ones: {', '.join(f'{v:.2f}' for v in share.tolist())}")


if __name__ == "__main__":
    main()
