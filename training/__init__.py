"""Train, evaluate and publish the convhub zoo on CIFAR-2."""
