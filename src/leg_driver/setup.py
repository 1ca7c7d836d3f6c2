from glob import glob

from setuptools import find_packages, setup

package_name = "leg_driver"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml", "README.md"]),
        ("share/" + package_name + "/docs", glob("docs/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="mdemorl developers",
    maintainer_email="mdemorl@example.com",
    description="Serial protocol, 500 Hz hardware interface and MCU emulator for the 2R leg and StochLite.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["hw_interface_node = leg_driver.hw_interface_node:main",
                                      "stochlite_estimator_node = leg_driver.stochlite_estimator_node:main"]},
)
