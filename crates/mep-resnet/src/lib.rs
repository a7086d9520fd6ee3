//! mep-resnet: the ResNet family.
