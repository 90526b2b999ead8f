"""What the model server's process sets before TensorFlow loads.

`ingot serve` runs SavedModels the way TF Serving does: through their signatures, with no Keras.
TensorFlow's own `import tensorflow` nevertheless imports Keras 3 eagerly (it pre-registers Keras'
optimizers for SavedModels that carry one), which measured 2.1 s of a 5.4 s import on this
project's 2-core reference machine, most of a cold start's fixed cost. TensorFlow skips that step
when Keras cannot be imported, so the server's process makes it unimportable before TensorFlow
loads. Serving exports never need it: the tests load and answer with them in such a process.
"""

from __future__ import annotations

import sys


def without_keras() -> bool:
    """Make `import keras` fail in this process, unless TensorFlow or Keras is already imported
    (then it is too late, or something wants it); returns whether it did."""
    if "tensorflow" in sys.modules or "keras" in sys.modules:
        return False
    sys.modules["keras"] = None  # type: ignore[assignment]  # an import of it raises ImportError
    return True
