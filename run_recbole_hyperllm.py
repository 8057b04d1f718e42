"""Train and test a recbole-hyperllm (or RecBole) model.

    python run_recbole_hyperllm.py --model=HGCF --dataset=ml-100k
    python run_recbole_hyperllm.py --model=HyperLLM_HGCF --dataset=ml-100k   # offline: inputs made on first use
    python run_recbole_hyperllm.py --model=HyperLLM_HGCF --dataset=Amazon_Beauty \
        --config_files=properties/beauty/HyperLLM_HGCF.yaml --epochs=5 --margin=1.6

    python run_recbole_hyperllm.py --model=HyperLLM_HGCF --dataset=ml-100k --nproc=2   # 2 processes (DDP)

Any other --key=value is a RecBole config override, as with RecBole's run script. RecBole's multi-process
keys (--nproc, --world_size, --ip, --port, --offset) spawn one process per rank: NCCL on GPUs, gloo on CPU.
"""
import argparse
import sys

from torch.multiprocessing import ProcessExitedException

from dataset_tools.common import PipelineError
from dataset_tools.default_data import prepare_inputs
from recbole_hyperllm.errors import ONE_LINE_ERRORS
from recbole_hyperllm.distributed import run_distributed
from recbole_hyperllm.quick_start import preflight, run_recbole_hyperllm

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", "-m", type=str, default="HGCF", help="name of the model")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="name of the dataset")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (RecBole's key)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (-1: nproc)")
    parser.add_argument("--ip", default="localhost")
    parser.add_argument("--port", default="5678")
    parser.add_argument("--offset", type=int, default=0, help="rank of this machine's first process")
    args, rest = parser.parse_known_args()
    loose = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if loose:  # RecBole would only warn and train something else (the default model, the default epochs)
        print(f"error: command-line argument {loose[0]!r} is not --key=value; write e.g. --model=HGCF --epochs=10",
              file=sys.stderr)
        sys.exit(2)
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    try:
        overrides = prepare_inputs(args.model, args.dataset, config_files)  # e.g. ml-100k's inputs, on first use
        if args.nproc > 1 or args.world_size > 0:
            preflight(args.model, args.dataset, config_files, overrides)  # one-line errors before spawning
            run_distributed(args.model, args.dataset, config_files, overrides, args.nproc, world_size=args.world_size,
                            ip=args.ip, port=args.port, offset=args.offset)
        else:
            run_recbole_hyperllm(model=args.model, dataset=args.dataset, config_file_list=config_files,
                                 config_dict=overrides)
    except (*ONE_LINE_ERRORS, PipelineError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except ProcessExitedException as error:  # a rank printed its error and exited; spawn stopped the others
        sys.exit(error.exit_code or 1)
