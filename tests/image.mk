# The container image (Dockerfile), built offline with podman: included from the top
# Makefile, after B (the build directory) is set.
#   make image          the base image from this machine's Debian mirror (once), then the
#                       image: localhost/modelstream:$(VERSION) and :latest, exported to
#                       $(B)/modelstream-image.tar (OCI archive)
#   make image-tests    lints the Dockerfile, builds the image, and runs it the way
#                       Kubernetes does against a local S3 endpoint (needs root)
# scripts/image.sh podman ARGS... runs podman on the same private store ($(B)/podman).

.PHONY: image image-tests

image:
	B=$(or $(B),build) scripts/image.sh build

# The host's CLI and mkmodel: the test model, and the checksums the image's stream must
# match. The image itself is built (or found up to date) by the test.
image-tests: $(or $(B),build)/modelstream $(or $(B),build)/mkmodel
	tests/image_tests.sh $(or $(B),build)
