"""Train and test a recbole-hyperllm (or RecBole) model.

    python run_recbole_hyperllm.py --model=HGCF --dataset=ml-100k
    python run_recbole_hyperllm.py --model=HyperLLM_HGCF --dataset=ml-100k   # offline: inputs made on first use
    python run_recbole_hyperllm.py --model=HyperLLM_HGCF --dataset=Amazon_Beauty \
        --config_files=properties/beauty/HyperLLM_HGCF.yaml --epochs=5 --margin=1.6

Any other --key=value is a RecBole config override, as with RecBole's run script.
"""
import argparse
import sys

from dataset_tools.common import PipelineError
from dataset_tools.default_data import prepare_inputs
from recbole_hyperllm.atomic import AtomicFileError
from recbole_hyperllm.errors import CheckpointError, ConfigError, DivergenceError
from recbole_hyperllm.quick_start import run_recbole_hyperllm

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", "-m", type=str, default="HGCF", help="name of the model")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="name of the dataset")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated config files")
    args, _ = parser.parse_known_args()
    config_files = args.config_files.strip().split(" ") if args.config_files else None
    try:
        overrides = prepare_inputs(args.model, args.dataset, config_files)  # e.g. ml-100k's inputs, on first use
        run_recbole_hyperllm(model=args.model, dataset=args.dataset, config_file_list=config_files,
                             config_dict=overrides)
    except (AtomicFileError, CheckpointError, ConfigError, DivergenceError, PipelineError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
