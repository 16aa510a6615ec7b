"""The options every training environment understands, with SimpleTuner's key names and defaults.

Plugins add their own options (see :mod:`simpletuner.core.options`); together they form the config schema.
"""

from __future__ import annotations

from typing import Any

import attrs

from simpletuner.core.options import PATH, PRIVILEGED, option
from simpletuner.core.scripts import RUN_PLACEHOLDERS, UPLOAD_PLACEHOLDERS, check_command

OPTIMIZERS = ("adamw", "adamw_bf16", "adafactor")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
RESOLUTION_TYPES = ("pixel", "area", "pixel_area")
DYNAMO_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: attention_mechanism values (SimpleTuner's names) → diffusers' attention backend names.
ATTENTION_BACKENDS = {
    "diffusers": "native", "native-math": "_native_math", "native-flash": "_native_flash",
    "native-efficient": "_native_efficient", "cudnn": "_native_cudnn", "flex": "flex", "flash-attn": "flash",
    "flash-attn-2": "flash", "flash-attn-varlen": "flash_varlen", "flash-attn-3": "_flash_3",
    "flash-attn-3-varlen": "_flash_varlen_3", "xformers": "xformers", "sageattention": "sage",
    "sageattention-varlen": "sage_varlen", "sageattention-int8-fp16-triton": "_sage_qk_int8_pv_fp16_triton",
    "sageattention-int8-fp16-cuda": "_sage_qk_int8_pv_fp16_cuda",
    "sageattention-int8-fp8-cuda": "_sage_qk_int8_pv_fp8_cuda",
}
ATTENTION_MECHANISMS = tuple(ATTENTION_BACKENDS)


@attrs.define(kw_only=True)
class CoreOptions:
    """Core training options. Field defaults are the one place each default is written."""

    # --- model -----------------------------------------------------------------------------------------------
    model_family: str | None = option(
        None, help="The model architecture to train, e.g. flux, sana, pixart.", section="model",
        choices_from="model_family",
    )
    model_flavour: str | None = option(
        None, help="A named variant of the family (weights and pre-enabled settings); the family's default if unset.",
        section="model",
    )
    model_type: str = option(
        "lora", help="Train an adapter (lora, which also covers LyCORIS) or every weight (full).", section="model",
        choices=("lora", "full"),
    )
    pretrained_model_name_or_path: str | None = option(
        None, label="Base model (Hub ID or folder)",
        help="Hugging Face repository or local diffusers folder of the base model; the flavour's if unset.",
        section="model", trust=PATH,
    )
    pretrained_vae_model_name_or_path: str | None = option(
        None, label="VAE (Hub ID or folder)",
        help="A different VAE to use instead of the base model's own.", section="model", trust=PATH
    )
    lora_type: str = option(
        "standard", help="standard = PEFT LoRA; lycoris = LyCORIS algorithms configured by lycoris_config.",
        section="model", choices=("standard", "lycoris"),
    )
    lora_rank: int = option(16, help="Rank of the LoRA matrices.", section="model", minimum=1)
    lora_alpha: float | None = option(
        None, help="LoRA scaling numerator; equal to lora_rank when unset (scale 1.0).", section="model", minimum=0
    )
    lora_dropout: float = option(0.1, help="Dropout on the LoRA path during training.", section="model",
                                 minimum=0, maximum=1)
    use_dora: bool = option(False, help="Train a DoRA (weight-decomposed LoRA): besides the low-rank update, a "
                            "learned magnitude per output feature of each adapted layer. Standard LoRA only.",
                            section="model", label="DoRA")
    lora_init_type: str = option(
        "default", help="How the LoRA's down matrices start: default (Kaiming-uniform) or gaussian; the up matrices "
        "start at zero either way, so training starts from the base model.", section="model",
        choices=("default", "gaussian"))
    lora_target_preset: str | None = option(
        None, help="A named set of layers to adapt offered by the family (e.g. attention, attention+mlp); "
        "the family's default if unset.", section="model",
    )
    lycoris_config: str | None = option(
        None, help="Path of the LyCORIS JSON config; the environment's lycoris_config.json if unset.", section="model",
        trust=PATH, editor="lycoris",
    )
    init_lora: str | None = option(None, help="Start from the weights of an existing LoRA file.", section="model",
                                   trust=PATH, label="Start from LoRA file")
    lora_save_formats: list[str] = option(
        factory=list, label="Extra LoRA file layouts",
        help="Also save the final LoRA in these key layouts beside the diffusers file, e.g. kohya "
        "(lora_unet_… keys, which ComfyUI, Forge and kohya's scripts load), for families that offer the layout.",
        section="model",
    )
    base_model_precision: str = option(
        "no_change", help="Quantise the frozen base model (e.g. int8-quanto); no_change keeps its dtype.",
        section="memory", choices_from="precision",
    )
    text_encoder_1_precision: str = option(
        "no_change", help="Quantise the first text encoder while caching.", section="memory", choices_from="precision"
    )
    text_encoder_2_precision: str = option(
        "no_change", help="Quantise the second text encoder while caching.", section="memory", choices_from="precision"
    )
    flow_schedule_shift: float = option(
        3.0, help="Shift of the flow-matching sigma schedule; higher values train more at high noise.",
        section="training", minimum=0,
    )
    flow_sigmoid_scale: float = option(
        1.0, help="Spread of the flow-matching noise levels: σ is drawn as sigmoid(scale × a standard normal draw); "
        "larger values train more at the very low and very high noise levels.", section="training", minimum=0)
    flow_use_uniform_schedule: bool = option(
        False, help="Draw the flow-matching noise levels uniformly instead of logit-normal.", section="training")
    flow_use_beta_schedule: bool = option(
        False, help="Draw the flow-matching noise levels from a Beta(flow_beta_schedule_alpha, "
        "flow_beta_schedule_beta) distribution instead of logit-normal.", section="training")
    flow_beta_schedule_alpha: float = option(2.0, help="α of flow_use_beta_schedule's distribution.",
                                             section="training", minimum=0)
    flow_beta_schedule_beta: float = option(2.0, help="β of flow_use_beta_schedule's distribution.",
                                            section="training", minimum=0)
    flow_schedule_auto_shift: bool = option(
        False, help="Shift each batch's sigmas by its image size instead of flow_schedule_shift: more for larger "
        "images, by the shift range of the pipeline's scheduler config (as the pipeline shifts them when "
        "generating).", section="training")

    # --- training --------------------------------------------------------------------------------------------
    output_dir: str = option("output/models", help="Root of the runs' outputs: each run writes its checkpoints, "
                             "final model, validation images and events into a new folder of its own here "
                             "(<UTC start time>-<environment>[-job<id>]).",
                             section="validation", trust=PATH)
    data_backend_config: str | None = option(
        None, label="Datasets file",
        help="Path of the datasets file; the environment's multidatabackend.json if unset.", section="dataset",
        trust=PATH,
    )
    train_batch_size: int = option(1, help="Samples per device per step.", section="training", minimum=1,
                                   label="Batch size per GPU")
    gradient_accumulation_steps: int = option(
        1, help="Micro-batches accumulated into one optimizer step.", section="training", minimum=1
    )
    num_train_epochs: int = option(
        1, label="Training epochs",
        help="Passes over the data; ignored when max_train_steps is set (set only one of them).",
        section="training", minimum=0,
    )
    max_train_steps: int = option(
        0, label="Training steps",
        help="Optimizer steps to train for; 0 trains for num_train_epochs instead.", section="training", minimum=0
    )
    learning_rate: float = option(1e-4, help="Peak learning rate.", section="training", minimum=0)
    lr_scheduler: str = option("constant", help="How the learning rate changes over training.", section="training",
                               choices=LR_SCHEDULERS, label="Learning-rate schedule")
    lr_end: float = option(1e-7, help="The learning rate a polynomial schedule ends at (below learning_rate).",
                           section="training", minimum=0, label="Final learning rate (polynomial)")
    lr_warmup_steps: int = option(0, help="Steps of linear warm-up from 0 to learning_rate.", section="training",
                                  minimum=0, label="Learning-rate warm-up steps")
    lr_num_cycles: int = option(1, help="Restarts of cosine_with_restarts.", section="training", minimum=1,
                                label="Learning-rate cycles")
    lr_power: float = option(1.0, help="Power of the polynomial scheduler.", section="training", minimum=0,
                             label="Learning-rate decay power")
    optimizer: str = option(
        "adamw", help="adamw (fp32 states), adamw_bf16 (bf16 weights with stochastic rounding), adafactor.",
        section="training", choices=OPTIMIZERS,
    )
    adam_beta1: float = option(0.9, help="AdamW beta1.", section="training", minimum=0, maximum=1, label="Adam beta 1")
    adam_beta2: float = option(0.999, help="AdamW beta2.", section="training", minimum=0, maximum=1,
                               label="Adam beta 2")
    adam_weight_decay: float = option(1e-2, help="Decoupled weight decay.", section="training", minimum=0)
    adam_epsilon: float = option(1e-8, help="AdamW epsilon.", section="training", minimum=0)
    max_grad_norm: float = option(2.0, help="Clip gradients to this norm (to this value with grad_clip_method "
                                  "value); 0 disables clipping.", section="training", minimum=0,
                                  label="Gradient clipping norm")
    grad_clip_method: str = option(
        "norm", help="How max_grad_norm clips: norm scales the gradients down to that total norm; value clamps each "
        "gradient value to ±max_grad_norm (SimpleTuner's default).", section="training", choices=("norm", "value"))
    lr_scale: bool = option(False, help="Multiply learning_rate by train_batch_size × gradient_accumulation_steps "
                            "× processes (the samples of one optimizer step).", section="training")
    lr_scale_sqrt: bool = option(False, help="With lr_scale, multiply by the square root of that number instead.",
                                 section="training")
    mixed_precision: str = option("bf16", help="Autocast precision of the forward pass.", section="memory",
                                  choices=("no", "bf16", "fp16"))
    gradient_checkpointing: bool = option(
        False, help="Recompute activations in the backward pass: much less memory, about 30% slower.",
        section="memory",
    )
    gradient_checkpointing_interval: int | None = option(
        None, help="With gradient_checkpointing, recompute only every n-th transformer block (1 or unset: every "
        "block); higher values trade memory back for speed.", section="memory", minimum=1,
    )
    # --- speed and memory on GPUs (core/training/compile.py, attention.py, offload.py, fp8.py) -------------
    dynamo_backend: str = option(
        "no", label="torch.compile backend",
        help="torch.compile backend for the trained model (inductor is the usual one); no trains eagerly. "
        "Checked against torch._dynamo.list_backends() when the run starts.", section="memory",
    )
    dynamo_mode: str | None = option(
        None, label="torch.compile mode",
        help="torch.compile mode; torch's default if unset.", section="memory", choices=DYNAMO_MODES,
    )
    dynamo_fullgraph: bool = option(
        False, label="torch.compile full graph",
        help="Compile each compiled region into one graph, failing on anything that would split it.",
        section="memory",
    )
    dynamo_dynamic: bool | None = option(
        None, label="torch.compile dynamic shapes",
        help="Compile for dynamic shapes (true), one shape at a time (false), or let torch decide after the "
        "first new shape (unset: recommended with several aspect buckets).", section="memory",
    )
    dynamo_use_regional_compilation: bool = option(
        False, label="Compile block by block (regional)",
        help="Compile each repeated transformer block once instead of the whole model: a much shorter "
        "compile for the same speed.", section="memory",
    )
    attention_mechanism: str = option(
        "diffusers", help="Attention kernels of the trained model through diffusers' attention dispatcher: diffusers "
        "(PyTorch SDPA, its best kernel), native-flash, native-efficient, native-math, cudnn, flex, flash-attn "
        "(pip install flash-attn), flash-attn-3, xformers (pip install xformers), sageattention* (pip install "
        "sageattention; validation only, training keeps SDPA).", section="memory", choices=ATTENTION_MECHANISMS,
    )
    sageattention_usage: str = option(
        "inference", help="Where a sageattention attention_mechanism is used: inference (validation) only; "
        "SageAttention kernels have no backward pass, so training with them is refused.", section="memory",
        choices=("inference", "training", "training+inference"),
    )
    enable_group_offload: bool = option(
        False, help="Keep frozen weights in CPU memory (or on disk) and move each group to the GPU only for its "
        "forward pass (diffusers' group offloading): the text encoders and VAE, and in a standard LoRA run the "
        "transformer's frozen base layers, layer by layer (the LoRA weights stay on the GPU). Full-rank and LyCORIS "
        "runs keep the transformer on the GPU. Use with gradient_checkpointing.", section="memory",
    )
    group_offload_type: str = option(
        "block_level", help="block_level moves groups of transformer blocks; leaf_level moves single layers "
        "(least memory, most transfers).", section="memory", choices=("block_level", "leaf_level"),
    )
    group_offload_blocks_per_group: int = option(
        1, help="Blocks moved together with block_level offloading: more is faster and uses more memory.",
        section="memory", minimum=1,
    )
    group_offload_use_stream: bool = option(
        False, help="Overlap the frozen encoders' transfers with compute on a CUDA stream (needs a CUDA GPU).",
        section="memory",
    )
    group_offload_to_disk_path: str | None = option(
        None, label="Group offload folder on disk",
        help="Folder to keep offloaded weights in instead of CPU memory (a fast local SSD).", section="memory",
        trust=PATH,
    )
    fp8_training: bool = option(
        False, help="Run the trained model's linear layers with float8 matmuls (torchao float8 training, dynamic "
        "scaling) for full-rank and LoRA runs; needs an NVIDIA GPU of compute capability 8.9 or newer (Ada, "
        "Hopper, Blackwell) and pip install torchao.", section="memory",
    )
    seed: int | None = option(None, help="Seed for reproducible runs; random when unset.", section="training")
    caption_dropout_probability: float = option(
        0.0, help="Chance of training a sample with an empty caption.", section="training", minimum=0, maximum=1
    )
    use_ema: bool = option(False, help="Keep an exponential moving average of the trained weights.",
                           section="training", label="Keep EMA weights")
    ema_decay: float = option(0.995, help="Decay of the moving average.", section="training", minimum=0, maximum=1)
    ema_update_interval: int = option(1, help="Update the moving average every this many optimizer steps (an "
                                      "interval of N with decay d is close to a decay of d**(1/N) every step).",
                                      section="training", minimum=1)

    # --- dataset ---------------------------------------------------------------------------------------------
    resolution: float = option(
        1024, help="Training resolution: pixels of the short edge (pixel), megapixels (area) or pixels² as an edge "
        "(pixel_area).", section="dataset", minimum=0,
    )
    resolution_type: str = option("pixel", help="How resolution is read.", section="dataset",
                                  choices=RESOLUTION_TYPES)
    minimum_image_size: float | None = option(
        None, help="Skip images smaller than this (same unit as resolution); the resolution if unset.",
        section="dataset", minimum=0,
    )
    aspect_bucket_alignment: int = option(
        64, help="Bucket edges are multiples of this many pixels.", section="dataset", minimum=8
    )
    vae_batch_size: int = option(
        4, help="Images per VAE call while caching latents; lower it if caching runs out of memory.",
        section="dataset", minimum=1,
    )
    vae_cache_ondemand: bool = option(
        False, label="Encode latents while training",
        help="Encode each image's latents when a batch first needs them instead of all of them before the first "
        "step: training starts once the datasets are scanned, and a VAE stays loaded while it runs. A Hugging Face "
        "dataset that names its width_column and height_column is then not even downloaded before the first step: "
        "each shard is fetched when training first reads one of its rows.",
        section="dataset",
    )
    batch_memory_cache_mb: int = option(
        1024, label="Batch memory cache (MB)",
        help="Megabytes of cached latents and embeddings each training process keeps decoded in memory after "
        "their first read (the rest is read from the cache every epoch); 0 reads everything every time.",
        section="dataset", minimum=0,
    )
    allow_dataset_oversubscription: bool = option(
        False, help="Repeat undersized buckets just enough for the effective batch instead of failing.",
        section="dataset",
    )

    # --- checkpoints, validation and output ------------------------------------------------------------------
    checkpointing_steps: int = option(500, help="Save a checkpoint every N steps; 0 disables.", section="validation",
                                      minimum=0)
    checkpoints_total_limit: int | None = option(
        None, help="Keep at most this many checkpoints in the run's folder, pruning the oldest.", section="validation",
        minimum=1,
    )
    resume_from_checkpoint: str | None = option(
        None, help="'latest' or a checkpoint folder to resume from. 'latest' takes the run folder of this "
        "environment under output_dir started last that holds a complete checkpoint, and in it the highest step; "
        "without one, output_dir/checkpoint-<step> of earlier versions. The resumed run writes into a new run "
        "folder.", section="validation", trust=PATH
    )
    validation_prompt: str | None = option(None, help="Prompt rendered at each validation.", section="validation")
    validation_negative_prompt: str | None = option(None, help="Negative prompt for families that use one.",
                                                    section="validation")
    validation_steps: int = option(100, help="Validate every N steps; 0 validates only at the end.",
                                   section="validation", minimum=0)
    validation_seed: int = option(42, help="Seed of validation images.", section="validation")
    validation_resolution: str = option("1024", help="Validation size: '1024' or '1024x768'.", section="validation")
    validation_guidance: float | None = option(
        None, label="Validation guidance scale",
        help="Guidance scale of validation images; the family's default if unset.", section="validation",
        minimum=0,
    )
    validation_num_inference_steps: int = option(20, help="Sampler steps of validation images.",
                                                 section="validation", minimum=1, label="Validation inference steps")
    validation_method: str = option(
        "pipeline", help="How validation runs: pipeline (generate images) or a plugin such as external-script.",
        section="validation", choices_from="validation_method",
    )
    report_to: list[str] = option(
        factory=lambda: ["none"], label="Trackers",
        help="Trackers to send metrics to (wandb, tensorboard, local); none by default.",
        section="validation", choices_from="tracker",
    )
    tracker_project_name: str = option("simpletuner", help="Project name in the trackers.", section="validation")
    tracker_run_name: str = option("simpletuner-training", help="Run name in the trackers.", section="validation")

    post_checkpoint_script: str | None = option(
        None, label="Command after each checkpoint",
        help="Command run after each checkpoint is on disk, e.g. 'python eval.py {local_checkpoint_path} "
        "{global_step}'. Split into arguments, never run by a shell; placeholders: {local_checkpoint_path}, "
        "{global_step}, {tracker_run_name}, {tracker_project_name}, {model_family}, {model_type}, {lora_type}, "
        "{huggingface_path} and validation_* options.", section="validation", trust=PRIVILEGED,
    )
    post_upload_script: str | None = option(
        None, label="Command after each upload",
        help="Command run after each upload; the placeholders of post_checkpoint_script plus "
        "{remote_checkpoint_path}.", section="publishing", trust=PRIVILEGED,
    )
    script_timeout: float = option(
        3600, label="Command timeout (s)",
        help="Seconds a post-checkpoint or post-upload command may run before it is killed and reported.",
        section="validation", minimum=1,
    )

    # --- publishing ------------------------------------------------------------------------------------------
    push_to_hub: bool = option(False, help="Upload the final model to the Hugging Face Hub.", section="publishing",
                               label="Push to the Hugging Face Hub")
    push_checkpoints_to_hub: bool = option(False, help="Also upload each checkpoint.", section="publishing",
                                           label="Push checkpoints to the Hub")
    hub_model_id: str | None = option(None, help="Hub repository (user/name) to publish to.", section="publishing",
                                      label="Hub repository (user/name)")
    publish_to: list[str] = option(
        factory=list, help="Publishers that receive the final model besides the Hub (e.g. local); push_to_hub adds "
        "hf-hub.", section="publishing", choices_from="publisher",
    )

    # --- multi-GPU, multi-node, DeepSpeed and FSDP2 ----------------------------------------------------------
    num_processes: int = option(1, help="Training processes in all (one per GPU); more than 1 runs through "
                                "accelerate launch.", section="environment", minimum=1, label="Processes (GPUs)")
    gpu_ids: str | None = option(None, help="GPUs this environment trains on, e.g. '1' or '0,1'; all visible if "
                                 "unset.", section="environment")
    num_machines: int = option(1, help="Machines taking part in a multi-node run.", section="environment",
                               minimum=1, label="Machines")
    machine_rank: int = option(0, help="This machine's rank in a multi-node run (0 = the main machine).",
                               section="environment", minimum=0)
    main_process_ip: str | None = option(None, help="Address of the main machine in a multi-node run.",
                                         section="environment", trust=PRIVILEGED, label="Main machine IP address")
    main_process_port: int = option(29500, help="Port of the main machine in a multi-node run.",
                                    section="environment", minimum=1, maximum=65535, label="Main machine port")
    deepspeed_config: str | None = option(
        None, help="DeepSpeed ZeRO: a preset (zero1, zero2, zero2-offload, zero3, zero3-offload, zero3-nvme), a "
        "JSON file or an inline JSON object.", section="memory", trust=PATH,
    )
    offload_param_path: str | None = option(None, help="NVMe folder for DeepSpeed's zero3-nvme offload.",
                                            section="memory", trust=PATH, label="DeepSpeed offload folder")
    fsdp_enable: bool = option(False, help="Shard the model with PyTorch FSDP2 through accelerate.",
                               section="memory", label="Use FSDP2")
    fsdp_reshard_after_forward: bool = option(
        True, help="Free gathered parameters after each forward pass (less memory, more communication).",
        section="memory",
    )
    fsdp_state_dict_type: str = option(
        "SHARDED_STATE_DICT", label="FSDP checkpoint layout",
        help="How FSDP checkpoints are written; the final model is always gathered.",
        section="memory", choices=("SHARDED_STATE_DICT", "FULL_STATE_DICT"),
    )
    fsdp_transformer_layer_cls_to_wrap: str | None = option(
        None, label="FSDP block classes to wrap",
        help="Block classes FSDP wraps (comma separated); the family's transformer blocks if unset.",
        section="memory",
    )
    fsdp_cpu_offload: bool = option(False, help="Keep FSDP shards in CPU memory between uses.", section="memory")
    fsdp_activation_checkpointing: bool = option(
        False, help="Recompute activations of FSDP-wrapped blocks in the backward pass.", section="memory"
    )

    # --- environment -----------------------------------------------------------------------------------------
    executor: str = option(
        "local", help="Where the server runs this environment's jobs: local (its own GPUs), ray, slurm or another "
        "installed executor; the executor's own options say how.", section="environment", choices_from="executor",
    )
    merge_environment_config: bool = option(
        False, label="Use environment defaults",
        help="Take every key this environment does not set from the 'default' environment.", section="environment",
    )

    @post_checkpoint_script.validator
    def _check_post_checkpoint_script(self, attribute: Any, value: str | None) -> None:
        if value is not None:
            check_command(value, RUN_PLACEHOLDERS | _core_validation_keys(), key=attribute.name)

    @post_upload_script.validator
    def _check_post_upload_script(self, attribute: Any, value: str | None) -> None:
        if value is not None:
            check_command(value, UPLOAD_PLACEHOLDERS | _core_validation_keys(), key=attribute.name)


def _core_validation_keys() -> frozenset[str]:
    return frozenset(f.name for f in attrs.fields(CoreOptions) if f.name.startswith("validation_"))
