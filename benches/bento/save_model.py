"""Trains the Python pipeline (training/train.py's, same split and seeds) and saves it in the local
BentoML model store as `ford_used_car_price`, for service.py. Run by benches/bento/run."""

import sys
from pathlib import Path

import bentoml
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))
import train  # noqa: E402  (the repository's training code)


def main():
    data = train.read_ford(sys.argv[1])
    training, _ = train_test_split(data, test_size=0.2, random_state=1234)
    pipeline = train.build_pipeline()
    pipeline.fit(training.drop(columns="price"), training["price"])
    saved = bentoml.sklearn.save_model("ford_used_car_price", pipeline)
    print(f"saved {saved.tag}")


if __name__ == "__main__":
    main()
