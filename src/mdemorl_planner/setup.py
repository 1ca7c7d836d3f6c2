from glob import glob

from setuptools import find_packages, setup

package_name = "mdemorl_planner"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="mdemorl developers",
    maintainer_email="mdemorl@example.com",
    description="Batched probabilistic ensemble dynamics and the DMD-MPC inner loop (CEM elites, MPPI) of M-DeMoRL.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "model_trainer_node = mdemorl_planner.model_trainer_node:main",
        "planner_node = mdemorl_planner.planner_node:main",
    ]},
)
