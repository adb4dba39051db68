"""由 dlgen 生成的 PyTorch 训练项目。"""
