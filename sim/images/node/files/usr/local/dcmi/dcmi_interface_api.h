/* ascend-sim placeholder: the DCMI API header of the NPU driver */
