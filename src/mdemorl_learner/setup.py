from glob import glob

from setuptools import find_packages, setup

package_name = "mdemorl_learner"

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
    description="Soft Actor-Critic, replay buffers, the M-DeMoRL/MBPO/MoPAC algorithms and the single-process trainer.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "agent_node = mdemorl_learner.agent_node:main",
            "learner_node = mdemorl_learner.learner_node:main",
        ]
    },
)
