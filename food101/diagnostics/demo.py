"""Small, CPU-fast stand-ins for the four training stories the diagnostics were built for.

The tests and notebooks/03_diagnosing_training.ipynb build their nets from these pieces with the
plain Caffe2 API (model_helper, brew, optimizer, workspace):

- `tiny_zoo_weights`: a "pretrained" deep conv backbone (hand-set: each layer passes colour
  information on), in the Model Zoo's input convention (BGR 0..255 minus the mean); the
  stand-in for SqueezeNet's weights.
- `add_backbone`: that backbone in a model, either frozen on the zoo's blobs or as params drawn
  by XavierFill (story 1: every weight re-initialised).
- `colour_batches`: a learnable synthetic task (the class is the colour of a patch), fed as
  uint8 or as mean-subtracted float.
- `write_lmdb`: an LMDB of TensorProtos records, optionally with poisoned records (story 4).
"""
import numpy as np

from food101.caffe2 import brew
from food101.data.augment import BGR_MEAN

MEAN_BGR = np.array(BGR_MEAN, np.float32)
COLOURS = np.array([[255, 40, 40], [40, 255, 40], [40, 40, 255], [230, 230, 40],
                    [40, 230, 230], [230, 40, 230]], np.float32)  # BGR patch colour per class


def backbone_names(depth):
    return ["conv%d" % (i + 1) for i in range(depth)]


def tiny_zoo_weights(depth=8, width=8, num_zoo_classes=10, seed=0):
    """{blob: array} of a pretrained-like backbone + a zoo classifier `pred` (num_zoo_classes).

    conv1 is a bank of colour detectors on mean-subtracted BGR input (channel k fires on pixels
    of colour COLOURS[k], about 1 on the colour, 0 elsewhere); the other layers pass the
    detections on (identity 3x3 kernels, zero bias). This is what pretraining buys: features a
    new classifier can read at once."""
    rng = np.random.RandomState(seed)
    w = {}
    first = np.zeros((width, 3, 3, 3), np.float32)
    bias = np.zeros(width, np.float32)
    centred = COLOURS - MEAN_BGR
    for k in range(min(width, len(COLOURS))):
        direction = centred[k] / np.linalg.norm(centred[k])
        first[k, :, 1, 1] = 5.0 * direction / np.linalg.norm(centred[k])
        bias[k] = -4.0  # fires only near the colour's own direction and length
    w["conv1_w"], w["conv1_b"] = first, bias
    for i in range(1, depth):
        k = np.zeros((width, width, 3, 3), np.float32)
        for c in range(width):
            k[c, c, 1, 1] = 1.0
        w["conv%d_w" % (i + 1)] = k
        w["conv%d_b" % (i + 1)] = np.zeros(width, np.float32)
    w["pred_w"] = (rng.randn(num_zoo_classes, width, 1, 1) * 0.1).astype(np.float32)
    w["pred_b"] = np.zeros(num_zoo_classes, np.float32)
    return w


def add_backbone(model, data, depth=8, width=8, trainable=False):
    """conv1..conv<depth> (3x3, pad 1) + ReLU on `data`; returns the last blob.

    trainable=False: plain Conv ops reading the zoo's blob names (fed from tiny_zoo_weights,
    not params: frozen). trainable=True: brew.conv, i.e. params with XavierFill weights in the
    param_init_net (the fine-tuning mistake of story 1 when the zoo weights are loaded first)."""
    blob, dim = data, 3
    for name in backbone_names(depth):
        if trainable:
            brew.conv(model, blob, name, dim, width, kernel=3, pad=1)
        else:
            model.net.Conv([blob, name + "_w", name + "_b"], name, kernel=3, pad=1)
        brew.relu(model, name, name)
        blob, dim = name, width
    return blob


def add_classifier(model, features, dim, num_classes, name="pred"):
    """FC -> Softmax -> LabelCrossEntropy -> AveragedLoss, Accuracy; returns the loss blob."""
    brew.fc(model, features, name, dim, num_classes)
    brew.softmax(model, name, "softmax")
    xent = model.net.LabelCrossEntropy(["softmax", "label"], "xent")
    loss = model.net.AveragedLoss(xent, "loss")
    brew.accuracy(model, ["softmax", "label"], "accuracy")
    return loss


def add_squeezenet_head(model, features, dim, num_classes, name="pred", relu=True):
    """SqueezeNet's classifier: 1x1 conv -> ReLU -> global AveragePool -> Softmax, then
    LabelCrossEntropy -> AveragedLoss and Accuracy; returns the loss blob. (The ReLU before the
    pooling can leave whole classes dead from the start; relu=False drops it.)"""
    brew.conv(model, features, name, dim, num_classes, kernel=1)
    if relu:
        brew.relu(model, name, name)
    brew.average_pool(model, name, "pool", global_pooling=True)
    brew.softmax(model, "pool", "softmax")
    xent = model.net.LabelCrossEntropy(["softmax", "label"], "xent")
    loss = model.net.AveragedLoss(xent, "loss")
    model.net.Flatten("softmax", "softmax_2d")
    brew.accuracy(model, ["softmax_2d", "label"], "accuracy")
    return loss


def colour_batches(num_batches, batch_size=16, num_classes=4, image=8, seed=0,
                   scale="zoo"):
    """[(images, labels)]: noise with a class-coloured square. scale: "uint8" (0..255 uint8),
    "zoo" (float, mean subtracted: what zoo models expect), "unit" (float in [0, 1]: the
    wrong scale for them)."""
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(num_batches):
        labels = rng.randint(0, num_classes, batch_size).astype(np.int32)
        images = rng.randint(0, 256, (batch_size, 3, image, image)).astype(np.float32) * 0.5 + 64
        for i, label in enumerate(labels):
            y, x = rng.randint(0, image // 2, 2)
            images[i, :, y:y + image // 2, x:x + image // 2] = COLOURS[label][:, None, None]
        out.append((_scaled(images, scale), labels))
    return out


def _scaled(images, scale):
    if scale == "uint8":
        return images.round().clip(0, 255).astype(np.uint8)
    if scale == "zoo":
        return (images - MEAN_BGR[None, :, None, None]).astype(np.float32)
    if scale == "unit":
        return (images / 255.0).astype(np.float32)
    raise ValueError("scale must be uint8, zoo or unit, got %r" % (scale,))


def write_lmdb(path, images, labels, poison=None):
    """An LMDB of TensorProtos [image CHW, label INT32] records with keys %08d; returns keys.

    poison: {record index: "nan" | "inf" | float}: that record's image is replaced by NaN, Inf
    or the given (extreme) value everywhere - a record that decoded or was converted wrongly."""
    import lmdb
    from food101.data.records import encode_record
    keys = []
    env = lmdb.open(path, map_size=1 << 28, subdir=True)
    with env.begin(write=True) as txn:
        for i, (image, label) in enumerate(zip(images, labels)):
            image = np.asarray(image, np.float32).copy()
            if poison and i in poison:
                value = poison[i]
                image[:] = {"nan": np.nan, "inf": np.inf}.get(value, value)
            key = "%08d" % i
            txn.put(key.encode("ascii"), encode_record(image, int(label)))
            keys.append(key)
    env.close()
    return keys
