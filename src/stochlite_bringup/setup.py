from glob import glob

from setuptools import find_packages, setup

package_name = "stochlite_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/urdf", glob("urdf/*.urdf")),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="mdemorl developers",
    maintainer_email="mdemorl@example.com",
    description="Launch files, parameters, robot descriptions and task definitions (2R leg, StochLite, MuJoCo tasks).",
    license="Apache-2.0",
    entry_points={"console_scripts": ["sim_bridge_node = stochlite_bringup.sim_bridge_node:main",
                                      "recorder_node = stochlite_bringup.recorder_node:main",
                                      "foxglove_bridge_node = stochlite_bringup.foxglove_bridge_node:main"]},
)
