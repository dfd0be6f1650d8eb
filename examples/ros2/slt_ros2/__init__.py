"""ROS 2 example for slt-deploy: a perception node that runs exported spiking models on camera images, and a
camera source. See examples/ros2/README.md."""
